"""`spgw users add|list|disable|reset|code` against a data folder, as an administrator runs them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyotp
from click.testing import CliRunner
from sqlmodel import Session, select

from gateway.cli import main
from gateway.console.models import ConsoleSession, ConsoleUser
from gateway.console.users import check_password
from gateway.demo import seed_directory
from gateway.schema import init_db

PASSWORD = "a perfectly long password"


def _data(tmp_path: Path, settings, engine, monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    # The commands must reach the test's database: on PostgreSQL that is a URL, not the data folder.
    if settings.database_url:
        monkeypatch.setenv("SPGW_DATABASE_URL", settings.database_url)
    init_db(engine)
    seed_directory(engine, settings)
    return ["--data-dir", str(settings.data_dir)]


def _run(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), input=stdin)


def test_users_add_prints_a_totp_uri_once_and_stores_an_argon2_hash(tmp_path, settings, engine, monkeypatch) -> None:
    data = _data(tmp_path, settings, engine, monkeypatch)
    added = _run(
        "users",
        "add",
        "ian.ig",
        "--role",
        "ig-officer",
        "--org",
        "QJM",
        "--password-stdin",
        *data,
        stdin=PASSWORD + "\n",
    )
    assert added.exit_code == 0, added.output
    uri = re.search(r"otpauth://\S+", added.output).group(0)  # type: ignore[union-attr]
    totp = pyotp.parse_uri(uri)
    assert isinstance(totp, pyotp.TOTP) and len(totp.byte_secret()) >= 20 and "issuer=sp-gateway" in uri
    with Session(engine) as session:
        user = session.get(ConsoleUser, "ian.ig")
        assert user is not None and user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
        assert check_password(session, "ian.ig", PASSWORD) is not None
    listed = json.loads(_run("users", "list", "--json", *data).output)
    assert listed == [{"username": "ian.ig", "role": "ig-officer", "organisation": "QJM", "active": True}]
    assert "otpauth" not in _run("users", "list", *data).output


def test_users_add_refuses_bad_input_in_words(tmp_path, settings, engine, monkeypatch) -> None:
    data = _data(tmp_path, settings, engine, monkeypatch)
    no_stdin = _run("users", "add", "x.y", "--role", "ig-officer", "--org", "QJM", *data)
    assert no_stdin.exit_code != 0 and "--password-stdin" in no_stdin.output
    short = _run(
        "users", "add", "x.y", "--role", "ig-officer", "--org", "QJM", "--password-stdin", *data, stdin="short\n"
    )
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    unknown = _run(
        "users", "add", "x.y", "--role", "admin", "--org", "NOPE", "--password-stdin", *data, stdin=PASSWORD + "\n"
    )
    assert unknown.exit_code == 1 and "no organisation NOPE" in unknown.output
    not_a_host = _run(
        "users",
        "add",
        "x.y",
        "--role",
        "vcse-staff",
        "--org",
        "A81001",
        "--password-stdin",
        *data,
        stdin=PASSWORD + "\n",
    )
    assert not_a_host.exit_code == 1 and "belongs to a VCSE host" in not_a_host.output
    host = _run(
        "users",
        "add",
        "val.staff",
        "--role",
        "vcse-staff",
        "--org",
        "8VC01",
        "--password-stdin",
        *data,
        stdin=PASSWORD + "\n",
    )
    assert host.exit_code == 0, host.output


def test_disable_ends_sessions_and_reset_gives_new_secrets(tmp_path, settings, engine, monkeypatch) -> None:
    data = _data(tmp_path, settings, engine, monkeypatch)
    first = _run(
        "users", "add", "dee.admin", "--role", "admin", "--org", "QJM", "--password-stdin", *data, stdin=PASSWORD + "\n"
    ).output
    with Session(engine) as session:
        session.add(ConsoleSession(token_sha256="a" * 64, username="dee.admin", stage="signed-in", csrf_token="t"))
        session.commit()
    assert _run("users", "disable", "dee.admin", *data).exit_code == 0
    with Session(engine) as session:
        assert session.exec(select(ConsoleSession)).all() == []
        assert check_password(session, "dee.admin", PASSWORD) is None  # disabled
    reset = _run("users", "reset", "dee.admin", "--password-stdin", *data, stdin="another long password\n")
    assert reset.exit_code == 0
    assert re.search(r"otpauth://\S+", reset.output).group(0) != re.search(r"otpauth://\S+", first).group(0)  # type: ignore[union-attr]
    with Session(engine) as session:
        assert check_password(session, "dee.admin", "another long password") is not None


def test_users_code_only_prints_codes_of_demo_accounts(tmp_path, settings, engine, monkeypatch) -> None:
    from gateway.console.demo import seed_console_users

    data = _data(tmp_path, settings, engine, monkeypatch)
    logins = seed_console_users(engine, settings)
    demo = _run("users", "code", logins[0].username, *data)
    assert demo.exit_code == 0 and re.fullmatch(r"\d{6}\n", demo.output)
    _run(
        "users",
        "add",
        "real.person",
        "--role",
        "admin",
        "--org",
        "QJM",
        "--password-stdin",
        *data,
        stdin=PASSWORD + "\n",
    )
    real = _run("users", "code", "real.person", *data)
    assert real.exit_code == 1 and "not a demo account" in real.output
    again = seed_console_users(engine, settings)
    assert again[0].password == logins[0].password  # a restart prints the same sign-in
