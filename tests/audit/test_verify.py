"""verify_log, checkpoints, inclusion and consistency proofs, retention and export, checked against the
independent RFC 9162 implementation in tests/audit/rfc9162_reference.py, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, select

from audit.checkpoint import load_verifier_key, parse_and_verify
from audit.export import export
from audit.merkle import EMPTY_ROOT, verify_consistency, verify_inclusion
from audit.proofs import ProofError, make_checkpoint, prove
from audit.retention import archive, check_segments
from audit.snapshot import head_size, read_snapshot
from audit.store import AuditEntry, AuditHead
from audit.verify import verify_log
from gateway.integrity import audit_signer
from gateway.schema import init_db
from tests.audit.rfc9162_reference import MTH, PATH, PROOF
from tests.support.audit_log import START, execute, fill_log

SIZE = 41


@pytest.fixture
def log(engine: Engine) -> Engine:
    init_db(engine)
    fill_log(engine, SIZE)
    return engine


def _contents(engine: Engine) -> list[bytes]:
    with Session(engine) as session:
        return [c.encode() for c in session.exec(select(AuditEntry.content).order_by(AuditEntry.seq))]  # type: ignore[arg-type]


def _key(settings):
    return load_verifier_key(audit_signer(settings).verifier_key())


def test_empty_log_verifies_with_the_empty_root(engine: Engine) -> None:
    init_db(engine)
    report = verify_log(engine)
    assert report.ok and report.size == 0 and report.root == EMPTY_ROOT.hex()


def test_root_is_the_rfc9162_root_of_the_entries(log: Engine) -> None:
    report = verify_log(log)
    assert report.ok, report.problem
    assert report.size == SIZE
    assert report.root == MTH(_contents(log)).hex()


@pytest.mark.parametrize("old_size", [1, 7, 16, 32, 40])
def test_consistency_proof_matches_the_reference_and_verifies(log: Engine, settings, old_size: int) -> None:
    from audit.checkpoint import Checkpoint

    entries = _contents(log)
    checkpoint = Checkpoint(origin=settings.audit_origin, size=old_size, root=MTH(entries[:old_size]))
    report = verify_log(log, checkpoint=checkpoint)
    assert report.ok and report.checked_checkpoint and report.consistency is not None
    proof = [bytes.fromhex(p) for p in report.consistency.proof]
    assert proof == PROOF(old_size, entries)
    assert verify_consistency(old_size, SIZE, checkpoint.root, MTH(entries), proof)


@pytest.mark.parametrize(("seq", "size"), [(0, 1), (0, SIZE), (17, SIZE), (40, SIZE), (5, 6), (31, 32)])
def test_inclusion_proof_matches_the_reference_and_verifies(log: Engine, seq: int, size: int) -> None:
    entries = _contents(log)[:size]
    proof = prove(log, seq, size=size)
    path = [bytes.fromhex(p) for p in proof["audit_path"]]
    assert path == PATH(seq, entries)
    assert proof["root"] == MTH(entries).hex()
    assert verify_inclusion(bytes.fromhex(proof["leaf_hash"]), seq, size, path, bytes.fromhex(proof["root"]))


def test_proof_outside_the_log_is_refused(log: Engine) -> None:
    with pytest.raises(ProofError):
        prove(log, SIZE)
    with pytest.raises(ProofError):
        prove(log, 3, size=SIZE + 1)


def test_checkpoint_covers_the_tree_before_its_own_event(log: Engine, settings) -> None:
    note = make_checkpoint(log, audit_signer(settings))
    checkpoint = parse_and_verify(note, *_key(settings))
    assert checkpoint.size == SIZE
    assert checkpoint.root == MTH(_contents(log)[:SIZE])
    with Session(log) as session:
        assert session.get(AuditHead, 1).size == SIZE + 1
        last = json.loads(session.get(AuditEntry, SIZE).content)
    assert last["subtype"][0]["code"] == "audit-checkpoint-signed"
    assert prove(log, 3, size=SIZE)["checkpoint"] == note
    assert verify_log(log, checkpoint=checkpoint).ok


def test_snapshot_sees_one_size_and_does_not_block_writers(log: Engine) -> None:
    with read_snapshot(log) as conn:
        before = head_size(conn)
        fill_log(log, 3)  # would wait for the writer lock if the snapshot held it
        assert head_size(conn) == before
        assert conn.execute(text("SELECT COUNT(*) FROM audit_entry")).scalar() == before
    assert verify_log(log).size == SIZE + 3


def test_archived_entries_still_verify_and_are_checked_against_segments(log: Engine, settings, tmp_path: Path) -> None:
    segments = tmp_path / "segments"
    result = archive(log, settings, audit_signer(settings), out_dir=segments, before=START + timedelta(hours=10))
    assert (result.first_seq, result.last_seq, result.count) == (0, 9, 10)
    with Session(log) as session:
        archived = session.exec(select(AuditEntry).where(AuditEntry.content.is_(None))).all()  # type: ignore[union-attr]
    assert sorted(e.seq for e in archived) == list(range(10))
    assert {e.archived_in for e in archived} == {result.segment}

    plain = verify_log(log)
    assert plain.ok and plain.archived_unchecked == 10
    checked = verify_log(log, segments_dir=segments)
    assert checked.ok and checked.archived_checked == 10 and checked.archived_unchecked == 0
    assert check_segments(segments, _key(settings)) == []
    checkpoint = parse_and_verify(result.checkpoint, *_key(settings))
    assert verify_log(log, checkpoint=checkpoint, segments_dir=segments).ok


def test_edited_segment_is_named(log: Engine, settings, tmp_path: Path) -> None:
    segments = tmp_path / "segments"
    result = archive(log, settings, audit_signer(settings), out_dir=segments, before=START + timedelta(hours=10))
    path = segments / result.segment
    path.write_text(path.read_text().replace('"outcome\\":\\"0\\"', '"outcome\\":\\"8\\"', 1))
    report = verify_log(log, segments_dir=segments)
    assert not report.ok
    assert report.first_bad_seq == 0 and "entry 0: content does not match its leaf hash" in report.problem
    assert any("SHA-256 differs" in p for p in check_segments(segments, _key(settings)))


def test_archive_refuses_a_tampered_range(log: Engine, settings, tmp_path: Path) -> None:
    from audit.retention import ArchiveError

    execute(log, "UPDATE audit_entry SET content = REPLACE(content, 'sr-4', 'sr-5') WHERE seq = 4")
    with pytest.raises(ArchiveError, match="entry 4"):
        archive(
            log, settings, audit_signer(settings), out_dir=tmp_path / "segments", before=START + timedelta(hours=10)
        )
    with Session(log) as session:
        assert session.get(AuditEntry, 0).content is not None


def test_ndjson_export_lines_hash_to_the_stored_leaves(log: Engine) -> None:
    out = io.StringIO()
    result = export(log, out, start=START + timedelta(hours=5), end=START + timedelta(hours=15), fmt="ndjson")
    lines = out.getvalue().splitlines()
    assert result.written == len(lines) == 10
    proofs = [prove(log, 5 + i, size=SIZE) for i in range(10)]
    from audit.merkle import leaf_hash

    assert [leaf_hash(line.encode()).hex() for line in lines] == [p["leaf_hash"] for p in proofs]
    with Session(log) as session:
        last = json.loads(session.get(AuditEntry, SIZE).content)
    assert last["subtype"][0]["code"] == "audit-exported"


def test_csv_export_has_a_header_and_one_row_per_entry(log: Engine) -> None:
    out = io.StringIO()
    export(log, out, start=START, end=START + timedelta(hours=4), fmt="csv")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["seq"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[2]["type"] == "110106" and rows[2]["recipient_org"] == "8VC01"
    assert rows[0]["recorded"] == "2026-01-01T00:00:00.000000Z"
