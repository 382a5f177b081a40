"""The change feed's numbering (gateway/storage/feed.py): a packet's feed number becomes visible only in
the order numbers were taken, so a reader that has seen number n has seen every number below it, on
SQLite and on PostgreSQL; and cursors are opaque but checked."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from gateway.models import Packet, Referral
from gateway.schema import init_db
from gateway.storage.feed import decode_cursor, encode_cursor, touch


def _seed(engine) -> None:  # type: ignore[no-untyped-def]
    init_db(engine)
    with Session(engine) as session:
        session.add(
            Referral(
                referral_id="SPR-FEED",
                service_request_id="sr-1",
                task_id="task-1",
                tenant="A81001",
                patient_id="pt-1",
                patient_nhs="9990000018",
            )
        )
        session.flush()
        for packet_id in ("PKT-A", "PKT-B"):
            session.add(
                Packet(packet_id=packet_id, referral_id="SPR-FEED", recipient="8VC01", kind="referral", body={})
            )
        session.commit()


def _visible(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return dict(conn.execute(select(Packet.packet_id, Packet.seq)).all())


def test_a_later_number_is_not_visible_before_an_earlier_one_commits(engine) -> None:
    _seed(engine)
    holding, release = threading.Event(), threading.Event()

    def slow_commit(session, *_: object) -> None:  # type: ignore[no-untyped-def]
        # Runs after the feed's own before_commit hook: the number is taken, the commit not yet done.
        if session.info.get("slow"):
            holding.set()
            release.wait(20)

    committed: dict[str, float] = {}

    def change(packet_id: str, slow: bool) -> None:
        with Session(engine) as session:
            session.info["slow"] = slow
            touch(session, packet_id, "8VC01")
            session.commit()
        committed[packet_id] = time.monotonic()

    event.listen(OrmSession, "before_commit", slow_commit)
    try:
        first = threading.Thread(target=change, args=("PKT-A", True))
        first.start()
        assert holding.wait(20)
        second = threading.Thread(target=change, args=("PKT-B", False))
        second.start()
        second.join(timeout=1.5)
        assert second.is_alive(), "a second writer took a number while the first held an uncommitted one"
        assert _visible(engine) == {"PKT-A": 0, "PKT-B": 0}
        release.set()
        first.join(20)
        second.join(20)
    finally:
        release.set()
        event.remove(OrmSession, "before_commit", slow_commit)

    seen = _visible(engine)
    assert seen["PKT-A"] < seen["PKT-B"]
    assert committed["PKT-A"] <= committed["PKT-B"]


def test_numbers_per_recipient_grow_by_one_per_touched_packet(engine) -> None:
    _seed(engine)
    with Session(engine) as session:
        touch(session, "PKT-A", "8VC01")
        touch(session, "PKT-B", "8VC01")
        touch(session, "PKT-A", "8VC01")  # twice in one transaction: one number
        session.commit()
    assert _visible(engine) == {"PKT-A": 1, "PKT-B": 2}


@pytest.mark.parametrize("cursor", ["", "f1.", "f1.!!", "f1.LTE", "2026-11-30", "f1." + "A" * 60])
def test_a_cursor_the_gateway_did_not_issue_reads_as_none(cursor: str) -> None:
    assert decode_cursor(cursor) is None


def test_cursors_round_trip() -> None:
    for seq in (0, 1, 41, 10**12):
        assert decode_cursor(encode_cursor(seq)) == seq
