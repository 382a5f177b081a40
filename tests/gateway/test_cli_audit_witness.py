"""`spgw audit verify` refuses a data folder without a database, never calls an empty log intact, and
checks the witness's newest checkpoint, which catches a rewrite of the whole database."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, delete, text

from audit.merkle import leaf_hash
from audit.store import AuditCheckpointRecord
from gateway.cli import main
from gateway.schema import init_db
from tests.support.audit_log import fill_log, spgw_audit


def test_verify_refuses_a_folder_with_no_database_and_creates_none(tmp_path: Path) -> None:
    typo = tmp_path / "dta"
    result = CliRunner().invoke(main, ["audit", "verify", "--data-dir", str(typo)], env={"SPGW_DATABASE_URL": None})
    assert result.exit_code == 2
    assert "no database" in result.output and "--data-dir" in result.output
    assert "intact" not in result.output
    assert not (typo / "spgw.db").exists()


def test_an_empty_log_is_not_reported_intact(settings, engine: Engine) -> None:
    init_db(engine)
    result = spgw_audit(settings, "verify")
    assert result.exit_code == 2  # nothing to verify, like a folder with no database
    assert "no entries" in result.output and "nothing was verified" in result.output and "intact" not in result.output


def test_the_witness_catches_a_rewrite_of_the_whole_database(settings, engine: Engine) -> None:
    init_db(engine)
    fill_log(engine, 12)
    published = spgw_audit(settings, "checkpoint", "--publish")
    assert published.exit_code == 0, published.output
    assert (settings.witness_folder / "checkpoint-12.note").is_file()
    intact = spgw_audit(settings, "verify")
    assert intact.exit_code == 0, intact.output
    assert "checked against the witness checkpoint" in intact.output
    with engine.begin() as conn:  # edit entry 4, recompute its leaf hash, drop the checkpoints
        content = conn.execute(text("SELECT content FROM audit_entry WHERE seq = 4")).scalar_one()
        forged = content.replace('"outcome":"0"', '"outcome":"8"', 1)
        assert forged != content
        conn.execute(
            text("UPDATE audit_entry SET content = :c, leaf_hash = :h, outcome = '8' WHERE seq = 4"),
            {"c": forged, "h": leaf_hash(forged.encode()).hex()},
        )
        conn.execute(delete(AuditCheckpointRecord))
    caught = spgw_audit(settings, "verify")
    assert caught.exit_code == 1, caught.output
    assert "no longer hash to the checkpoint's root" in caught.output
