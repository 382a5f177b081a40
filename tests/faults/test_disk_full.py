"""Disk full on SQLite: the data folder is on a small tmpfs the test mounts (root with CAP_SYS_ADMIN;
skipped otherwise) and a filler file takes the last free byte. Referrals are refused with 503,
Retry-After and an OperationOutcome; nothing is half-written; once space returns the gateway carries
on and its audit log verifies."""

from __future__ import annotations

import contextlib
import errno
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import text

from gateway.cli import main
from tests.conftest import copy_template
from tests.profiles.gp_message import referral_bundle

FHIR = {"Content-Type": "application/fhir+json"}
SIZE = "8m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a {SIZE} tmpfs here ({done.stderr.decode().strip()[:80]})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(folder: Path) -> Path:
    """Writes a file until the filesystem has no byte left; returns it."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        with contextlib.suppress(OSError):  # full: that is the point
            while True:  # the last partial block
                out.write(b"\0")
    return filler


def test_a_full_disk_answers_503_writes_nothing_and_the_audit_verifies_after(
    small_disk: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.app import create_app
    from gateway.demo import seed_directory
    from gateway.settings import Settings

    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    data = small_disk / "data"
    copy_template(sqlite_template, data)
    settings = Settings(data_dir=data)
    app = create_app(settings)
    engine = app.state.spgw.engine
    seed_directory(engine, settings)

    with TestClient(app, base_url="http://testserver") as client:
        headers = _gp_headers(app)
        first = referral_bundle("9990001006", "A81001", vcse_id="8VC01", ref_id="DF-1", consent_to=["8VC01"])
        assert client.post("/fhir/$process-message", json=first, headers={**headers(), **FHIR}).status_code == 200
        before = _counts(engine)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # an empty WAL: the next write needs new blocks
        filler = fill(small_disk)

        refused = []
        for n in range(3):
            bundle = referral_bundle("9990001014", "A81001", vcse_id="8VC01", ref_id=f"DF-F{n}", consent_to=["8VC01"])
            refused.append(client.post("/fhir/$process-message", json=bundle, headers={**headers(), **FHIR}))
        for response in refused:
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"].isdigit()
            assert response.json()["resourceType"] == "OperationOutcome"
            assert response.json()["issue"][0]["code"] == "transient"
        assert client.get("/readyz").status_code in (200, 503)  # it answers, whatever it says

        filler.unlink()  # space returns
        assert _counts(engine) == before  # nothing half-written
        again = referral_bundle("9990001014", "A81001", vcse_id="8VC01", ref_id="DF-2", consent_to=["8VC01"])
        assert client.post("/fhir/$process-message", json=again, headers={**headers(), **FHIR}).status_code == 200
        after = _counts(engine)
    assert after["referral"] == before["referral"] + 1
    engine.dispose()
    verified = CliRunner().invoke(main, ["audit", "verify", "--data-dir", str(data)])
    assert verified.exit_code == 0, verified.output
    shutil.rmtree(data, ignore_errors=True)


def _gp_headers(app):  # type: ignore[no-untyped-def]
    from gateway.auth.principal import ROLE_SCOPES, Principal, Role
    from gateway.auth.tokens import issue_access_token

    principal = Principal("demo-gp", "A81001", Role.REFERRER, frozenset(ROLE_SCOPES[Role.REFERRER]))

    def headers() -> dict[str, str]:
        token = issue_access_token(app.state.spgw.token_keys, principal, issuer="http://testserver", ttl=300)
        return {
            "Authorization": f"Bearer {token}",
            "X-Request-ID": str(uuid.uuid4()),
            "X-Correlation-ID": str(uuid.uuid4()),
        }

    return headers


def _counts(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar()  # noqa: S608 (fixed names)
            for t in ("referral", "packet", "outbox", "audit_entry", "idempotency")
        }
