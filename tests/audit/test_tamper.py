"""Tampering with the stored log, as someone with database access would, is caught by `spgw audit verify`,
which names the first entry at fault. Each test runs on a real SQLite file and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from audit.merkle import leaf_hash
from gateway.schema import init_db
from tests.support.audit_log import execute, fill_log, spgw_audit

SIZE = 40


@pytest.fixture
def log(settings, engine: Engine) -> Engine:
    init_db(engine)
    fill_log(engine, SIZE)
    return engine


def _checkpoint(settings, tmp_path: Path) -> Path:
    out = tmp_path / "checkpoint.note"
    result = spgw_audit(settings, "checkpoint", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def _row(engine: Engine, seq: int) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM audit_entry WHERE seq = :s"), {"s": seq}).mappings().one())


def test_untouched_log_verifies(settings, log: Engine) -> None:
    result = spgw_audit(settings, "verify")
    assert result.exit_code == 0, result.output
    assert f"intact: {SIZE} entries, root " in result.output


def test_edited_field_is_named(settings, log: Engine) -> None:
    execute(
        log,
        "UPDATE audit_entry SET content = REPLACE(content, :old, :new) WHERE seq = 17",
        old='"outcome":"0"',
        new='"outcome":"4"',
    )
    result = spgw_audit(settings, "verify")
    assert result.exit_code == 1
    assert "entry 17: content does not match its leaf hash" in result.output


def test_edited_search_column_is_named(settings, log: Engine) -> None:
    execute(log, "UPDATE audit_entry SET patient_nhs = '9990001014' WHERE seq = 17")
    result = spgw_audit(settings, "verify")
    assert result.exit_code == 1
    assert "entry 17: search column patient_nhs does not match" in result.output


def test_deleted_entry_is_named(settings, log: Engine) -> None:
    execute(log, "DELETE FROM audit_entry WHERE seq = 17")
    result = spgw_audit(settings, "verify")
    assert result.exit_code == 1
    assert "entry 17 is missing (the next stored entry is 18)" in result.output


def test_inserted_entry_is_named(settings, log: Engine) -> None:
    row = _row(log, SIZE - 1)
    row["seq"] = SIZE
    columns = ", ".join(row)
    execute(log, f"INSERT INTO audit_entry ({columns}) VALUES ({', '.join(':' + c for c in row)})", **row)  # noqa: S608
    result = spgw_audit(settings, "verify")
    assert result.exit_code == 1
    assert f"entry {SIZE}: the head records {SIZE} entries" in result.output


def test_deleted_tail_is_caught_by_the_head(settings, log: Engine) -> None:
    execute(log, "DELETE FROM audit_entry WHERE seq >= 35")
    result = spgw_audit(settings, "verify")
    assert result.exit_code == 1
    assert "entries 35..39 were deleted from the end" in result.output


def test_swapped_entries_are_named(settings, log: Engine) -> None:
    a, b = _row(log, 5), _row(log, 9)
    for seq, row in ((5, b), (9, a)):
        values = {k: v for k, v in row.items() if k != "seq"}
        assignments = ", ".join(f"{k} = :{k}" for k in values)
        execute(log, f"UPDATE audit_entry SET {assignments} WHERE seq = :target", target=seq, **values)  # noqa: S608
    result = spgw_audit(settings, "verify")
    assert result.exit_code == 1
    assert "entry 5: its content is entry '9'" in result.output


def test_truncated_tail_is_caught_only_with_a_checkpoint(settings, log: Engine, tmp_path: Path) -> None:
    note = _checkpoint(settings, tmp_path)
    execute(log, "DELETE FROM audit_entry WHERE seq >= 30")
    execute(log, "UPDATE audit_head SET size = 30")
    without = spgw_audit(settings, "verify")
    assert without.exit_code == 0, "a cleanly truncated log is self-consistent"
    result = spgw_audit(settings, "verify", "--checkpoint", str(note))
    assert result.exit_code == 1
    assert f"truncated: the log holds 30 entries but the checkpoint covers {SIZE}" in result.output


def test_rewrite_with_recomputed_leaf_hash_is_caught_only_with_a_checkpoint(
    settings, log: Engine, tmp_path: Path
) -> None:
    note = _checkpoint(settings, tmp_path)
    key = spgw_audit(settings, "verifier-key").output.strip()
    content = _row(log, 17)["content"].replace("active opt-in Consent names the recipient", "no Consent on record")
    execute(
        log,
        "UPDATE audit_entry SET content = :c, leaf_hash = :h WHERE seq = 17",
        c=content,
        h=leaf_hash(content.encode()).hex(),
    )
    assert spgw_audit(settings, "verify").exit_code == 0
    result = spgw_audit(settings, "verify", "--checkpoint", str(note), "--verifier-key", key)
    assert result.exit_code == 1
    assert f"the first {SIZE} entries no longer hash to the checkpoint's root" in result.output


def test_intact_log_is_consistent_with_an_earlier_checkpoint(settings, log: Engine, tmp_path: Path) -> None:
    note = _checkpoint(settings, tmp_path)
    fill_log(log, 5)
    result = spgw_audit(settings, "verify", "--checkpoint", str(note))
    assert result.exit_code == 0, result.output
    assert f"consistent with the checkpoint at size {SIZE}" in result.output


def test_checkpoint_signed_by_another_key_is_refused(settings, log: Engine, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from audit.checkpoint import verifier_key_string

    note = _checkpoint(settings, tmp_path)
    stranger = verifier_key_string(settings.audit_origin, Ed25519PrivateKey.generate().public_key())
    result = spgw_audit(settings, "verify", "--checkpoint", str(note), "--verifier-key", stranger)
    assert result.exit_code == 2
    assert "signature" in result.output
