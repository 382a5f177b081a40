"""Concurrent writers on separate sessions take one sequence number each: no gap, no duplicate, one tree.
The head row is locked for the rest of each writer's transaction (FOR UPDATE on PostgreSQL; SQLite's
BEGIN IMMEDIATE serialises writers)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session, select

from audit.store import AuditEntry, append
from audit.verify import verify_log
from gateway.db import transaction
from gateway.schema import init_db
from tests.support.audit_log import event

THREADS = 8
PER_THREAD = 50


def test_parallel_appends_are_gap_free_and_verify(engine: Engine) -> None:
    init_db(engine)
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    seqs: list[int] = []
    lock = threading.Lock()

    def writer(worker: int) -> None:
        try:
            start.wait()
            for i in range(PER_THREAD):
                with transaction(engine) as session:
                    seq = append(session, event(worker * PER_THREAD + i, datetime.now(UTC)))
                with lock:
                    seqs.append(seq)
        except BaseException as exc:  # collected and re-raised by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    total = THREADS * PER_THREAD
    assert sorted(seqs) == list(range(total))
    with Session(engine) as session:
        stored = list(session.exec(select(AuditEntry.seq).order_by(AuditEntry.seq)))  # type: ignore[arg-type]
    assert stored == list(range(total))
    report = verify_log(engine)
    assert report.ok, report.problem
    assert report.size == total
