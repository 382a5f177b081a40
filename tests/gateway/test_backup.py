"""The restore drill: `spgw backup` of a live gateway, restored elsewhere; `spgw audit verify --checkpoint`
against the last published checkpoint passes and every table holds what it held."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from gateway.cli import main
from gateway.settings import Settings
from tests.profiles.gp_message import referral_bundle

FHIR = {"Content-Type": "application/fhir+json"}


def spgw(settings: Settings, *args: str):  # type: ignore[no-untyped-def]
    env = {"SPGW_DATA_DIR": str(settings.data_dir), "SPGW_DATABASE_URL": settings.database_url}
    return CliRunner().invoke(main, [*args, "--data-dir", str(settings.data_dir)], env=env)


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()  # names from the catalogue, not from input
            return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in tables}  # noqa: S608
    finally:
        engine.dispose()


def test_a_backup_restores_to_a_copy_whose_audit_log_verifies(client, token_for, settings, tmp_path: Path) -> None:
    for i, nhs in enumerate(("9990001006", "9990001014", "9990001022")):
        bundle = referral_bundle(nhs, "A81001", vcse_id="8VC01", ref_id=f"BK-{i}", consent_to=["8VC01"])
        assert (
            client.post("/fhir/$process-message", json=bundle, headers={**token_for("demo-gp"), **FHIR}).status_code
            == 200
        )
    note = tmp_path / "published.note"
    assert spgw(settings, "audit", "checkpoint", "--out", str(note)).exit_code == 0
    before = counts(settings.db_url)

    dest = tmp_path / "backups" / "spgw.backup"
    made = spgw(settings, "backup", str(dest))
    assert made.exit_code == 0, made.output
    assert str(dest) in made.output
    # the gateway keeps working after its backup; the backup is the state at the time it was taken
    late = referral_bundle("9990001030", "A81001", vcse_id="8VC01", ref_id="BK-late", consent_to=["8VC01"])
    assert client.post("/fhir/$process-message", json=late, headers={**token_for("demo-gp"), **FHIR}).status_code == 200

    assert dest.stat().st_mode & 0o777 == 0o600  # a backup holds patient data: its owner's only
    restored = _restore(settings, dest, tmp_path / "restored")
    verified = spgw(restored, "audit", "verify", "--checkpoint", str(note))
    assert verified.exit_code == 0, verified.output
    assert counts(restored.db_url) == before
    assert before["audit_entry"] > 0 and before["referral"] == 3


def _restore(settings: Settings, backup: Path, folder: Path) -> Settings:
    """What the operator does: keys from where they keep secrets, the database from the backup, in a
    private folder (the gateway refuses a data folder others can read)."""
    folder.mkdir(mode=0o700)
    shutil.copytree(settings.keys_dir, folder / "keys")
    if settings.database_url is None:
        shutil.copy2(backup, folder / "spgw.db")
        return Settings(data_dir=folder)
    url = make_url(settings.database_url)
    name = "restored_" + uuid.uuid4().hex[:8]
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    target = Settings(data_dir=folder, database_url=url.set(database=name).render_as_string(False))
    libpq = url.set(database=name, drivername="postgresql").render_as_string(False)
    done = subprocess.run(
        [shutil.which("pg_restore") or "pg_restore", "--no-owner", f"--dbname={libpq}", str(backup)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return target
