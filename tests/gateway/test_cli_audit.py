"""`spgw audit` commands against a real database folder (SQLite file, or PostgreSQL by URL)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from audit.checkpoint import load_verifier_key, parse_and_verify
from audit.merkle import leaf_hash, verify_inclusion
from gateway.schema import init_db
from tests.support.audit_log import fill_log, spgw_audit

SIZE = 24  # entries recorded hourly from 2026-01-01T00:00Z


@pytest.fixture
def log(settings, engine: Engine) -> Engine:
    init_db(engine)
    fill_log(engine, SIZE)
    return engine


def test_checkpoint_note_verifies_with_the_printed_verifier_key(settings, log: Engine, tmp_path: Path) -> None:
    out = tmp_path / "cp.note"
    result = spgw_audit(settings, "checkpoint", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text() == result.output
    key = load_verifier_key(spgw_audit(settings, "verifier-key").output.strip())
    checkpoint = parse_and_verify(out.read_text(), *key)
    assert (checkpoint.origin, checkpoint.size) == (settings.audit_origin, SIZE)


def test_prove_prints_a_proof_that_verifies(settings, log: Engine) -> None:
    result = spgw_audit(settings, "prove", "7", "--size", "20")
    assert result.exit_code == 0, result.output
    proof = json.loads(result.output)
    assert (proof["seq"], proof["tree_size"]) == (7, 20)
    path = [bytes.fromhex(p) for p in proof["audit_path"]]
    assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), 7, 20, path, bytes.fromhex(proof["root"]))
    missing = spgw_audit(settings, "prove", str(SIZE + 5))
    assert missing.exit_code == 1 and "not in a tree" in missing.output


def test_export_writes_the_window_as_ndjson_and_csv(settings, log: Engine, tmp_path: Path) -> None:
    ndjson = tmp_path / "day.ndjson"
    result = spgw_audit(settings, "export", "--from", "2026-01-01", "--to", "2026-01-01", "--out", str(ndjson))
    assert result.exit_code == 0, result.output
    lines = ndjson.read_text().splitlines()
    assert len(lines) == SIZE and json.loads(lines[3])["id"] == "3"
    proof = json.loads(spgw_audit(settings, "prove", "3").output)
    assert leaf_hash(lines[3].encode()).hex() == proof["leaf_hash"]

    table = tmp_path / "morning.csv"
    morning = ("--from", "2026-01-01T00:00:00", "--to", "2026-01-01T06:00:00", "--format", "csv", "--out", str(table))
    assert spgw_audit(settings, "export", *morning).exit_code == 0
    rows = list(csv.DictReader(table.open()))
    assert [r["seq"] for r in rows] == [str(i) for i in range(6)]


def test_archive_then_verify_with_segments(settings, log: Engine, tmp_path: Path) -> None:
    segments = tmp_path / "segments"
    result = spgw_audit(settings, "archive", "--before", "2026-01-01T12:00:00", "--out", str(segments))
    assert result.exit_code == 0, result.output
    assert "archived entries 0..11 (12)" in result.output
    assert (segments / "audit-000000000000-000000000011.ndjson.note").is_file()
    plain = spgw_audit(settings, "verify")
    assert plain.exit_code == 0 and "not checked (no segments given): 12" in plain.output
    checked = spgw_audit(settings, "verify", "--segments", str(segments))
    assert checked.exit_code == 0, checked.output
    assert "archived entries checked against segments: 12" in checked.output
    again = spgw_audit(settings, "archive", "--before", "2026-01-01T12:00:00", "--out", str(segments))
    assert again.exit_code == 0 and "nothing to archive" in again.output


def test_verify_json_report(settings, log: Engine) -> None:
    result = spgw_audit(settings, "verify", "--json")
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["ok"] is True and report["size"] == SIZE and report["first_bad_seq"] is None


def test_verify_refuses_a_data_folder_without_a_database(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    typo = tmp_path / "dat"
    result = CliRunner().invoke(main, ["audit", "verify", "--data-dir", str(typo)], env={"SPGW_DATABASE_URL": None})
    assert result.exit_code == 2
    assert "no database" in result.output and "intact" not in result.output
    assert not (typo / "spgw.db").exists()  # nothing was created


def test_verify_never_calls_an_empty_log_intact(settings, engine: Engine) -> None:
    init_db(engine)
    result = spgw_audit(settings, "verify")
    assert result.exit_code == 2
    assert "no entries" in result.output and "intact" not in result.output
