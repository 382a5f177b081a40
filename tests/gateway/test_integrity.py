"""gateway/integrity.py: automatic checkpoints to the witness, and verification that never calls an empty
log intact and reports an unusable witness instead of skipping it."""

from __future__ import annotations

import time

from sqlalchemy import Engine

from audit.checkpoint import load_verifier_key, open_note
from gateway.integrity import CheckpointThread, audit_signer, verify
from gateway.schema import init_db
from tests.support.audit_log import fill_log


def test_the_thread_publishes_a_checkpoint_when_the_log_has_grown(settings, engine: Engine) -> None:
    init_db(engine)
    fill_log(engine, 6)
    thread = CheckpointThread(engine, settings, interval_seconds=0.1)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not (settings.witness_folder / "checkpoint-6.note").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # several more rounds: nothing new to sign, so no new note
    finally:
        thread.stop()
        thread.join(timeout=10)
    notes = sorted(p.name for p in settings.witness_folder.glob("checkpoint-*.note"))
    assert notes == ["checkpoint-6.note"]


def test_an_empty_log_fails_verification(settings, engine: Engine) -> None:
    init_db(engine)
    done = verify(engine, settings)
    assert not done.report.ok and "empty" in (done.report.problem or "")
    text = open_note(done.statement, *load_verifier_key(audit_signer(settings).verifier_key()))
    assert "Result: FAILED" in text


def test_an_unreadable_witness_is_a_failure(settings, engine: Engine) -> None:
    init_db(engine)
    fill_log(engine, 3)
    settings.witness_folder.mkdir(parents=True)
    (settings.witness_folder / "checkpoint-3.note").write_text("not a signed note\n")
    done = verify(engine, settings)
    assert not done.report.ok and "checkpoint-3.note" in (done.report.problem or "")
