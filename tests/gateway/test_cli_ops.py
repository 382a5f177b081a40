"""`spgw migrate` is the only thing that changes the schema or makes keys; everything that serves refuses,
naming migrate, a database that is behind or a data folder without keys."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, text

from gateway.auth.keys import KeysMissing, TokenKeys, ensure_keys
from gateway.cli import main
from gateway.db import make_engine
from gateway.schema import SchemaNotCurrent, head_revisions
from gateway.settings import Settings


def test_create_app_refuses_a_database_that_was_never_migrated_and_creates_nothing(tmp_path: Path) -> None:
    from gateway.app import create_app

    settings = Settings(data_dir=tmp_path / "data")
    engine = make_engine(settings)
    with pytest.raises(SchemaNotCurrent, match="spgw migrate"):
        create_app(settings, engine)
    assert inspect(engine).get_table_names() == []  # no migration ran
    assert not settings.keys_dir.exists()  # and no key was made


def test_create_app_refuses_a_data_folder_without_keys(settings, engine) -> None:
    from gateway.app import create_app

    for path in settings.keys_dir.iterdir():
        path.unlink()
    with pytest.raises(KeysMissing, match="spgw migrate"):
        create_app(settings, engine)
    assert list(settings.keys_dir.iterdir()) == []


def test_migrate_is_idempotent_and_keeps_the_keys_it_made(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    first = CliRunner().invoke(main, ["migrate", *data])
    assert first.exit_code == 0, first.output
    kid = TokenKeys(tmp_path / "data" / "keys", create=False).current.kid
    again = CliRunner().invoke(main, ["migrate", *data])
    assert again.exit_code == 0, again.output
    assert TokenKeys(tmp_path / "data" / "keys", create=False).current.kid == kid
    engine = make_engine(Settings(data_dir=tmp_path / "data"))
    with engine.connect() as conn:
        assert {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))} == head_revisions()
        assert conn.execute(text("SELECT size FROM audit_head")).scalar() == 0
    engine.dispose()


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker", "--once"], ["mllp", "--port", "1"]])
def test_each_process_refuses_an_unmigrated_data_folder_naming_migrate(tmp_path: Path, command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "refusing to start" in result.output and "spgw migrate" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("version", "says"), [("0000_older", "does not know"), (None, "never migrated")], ids=["unknown", "none"]
)
def test_serve_names_the_revision_it_found(settings, engine, version: str | None, says: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
        if version:
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": version})
    env = {"SPGW_DATABASE_URL": settings.database_url}  # the test's database, SQLite or PostgreSQL
    result = CliRunner().invoke(main, ["serve", "--port", "1", "--data-dir", str(settings.data_dir)], env=env)
    assert result.exit_code == 1
    assert says in result.output and "spgw migrate" in result.output


def test_the_cli_never_migrates_on_its_own(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["orgs", "list", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "spgw migrate" in result.output


def test_a_serving_process_never_creates_keys(tmp_path: Path) -> None:
    with pytest.raises(KeysMissing):
        TokenKeys(tmp_path, create=False)
    assert list(tmp_path.iterdir()) == []


def _make_keys_and_read_kid(keys_dir: str) -> str:
    ensure_keys(Path(keys_dir))
    return TokenKeys(Path(keys_dir), create=False).current.kid


def test_processes_racing_to_create_the_keys_end_up_with_one_key(tmp_path: Path) -> None:
    """The cause of the 401s with two workers: each process made (and signed with) its own key."""
    keys_dir = str(tmp_path / "keys")
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        kids = pool.map(_make_keys_and_read_kid, [keys_dir] * 12)
    assert len(set(kids)) == 1
    on_disk = json.loads((tmp_path / "keys" / "token-signing.jwks.json").read_text())
    assert [k["kid"] for k in on_disk["keys"]] == kids[:1]
    assert not [p for p in (tmp_path / "keys").iterdir() if p.name.endswith(".tmp")]
