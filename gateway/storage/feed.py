"""The VCSE host's change feed: a per-recipient sequence number on every packet change, and the queries
cursors. The feed's queries are scoped storage functions in gateway/storage/packets.py (listed, notices)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sqlalchemy import bindparam, event, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from gateway.models import FeedCounter, Packet

_CURSOR_PREFIX = "f1."
_PENDING = "spgw.feed.touched"


def touch(session: Session, packet_id: str, recipient: str) -> None:
    """Notes that a packet changed in this transaction; it gets its feed number when the transaction commits."""
    session.info.setdefault(_PENDING, []).append((packet_id, recipient))


def _number_pending(session: Session, *_: Any) -> None:
    """Before commit: gives each packet touched in this transaction the recipient's next feed numbers.

    Taking the numbers bumps the recipient's counter row, whose lock (PostgreSQL row lock; SQLite's single
    writer) is held until the commit that follows at once: a later number is taken only after an earlier one
    is committed, so a reader that has seen number n has seen every number below it. Taken last, after any
    audit append, the lock is never held while waiting for another one.
    """
    pending: list[tuple[str, str]] = session.info.pop(_PENDING, [])
    if not pending:
        return
    session.flush()
    by_recipient: dict[str, list[str]] = {}
    for packet_id, recipient in pending:
        ids = by_recipient.setdefault(recipient, [])
        if packet_id not in ids:
            ids.append(packet_id)
    connection = session.connection()
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    counters = FeedCounter.__table__  # type: ignore[attr-defined]
    packets = Packet.__table__  # type: ignore[attr-defined]
    for recipient in sorted(by_recipient):  # one order for every writer
        ids = by_recipient[recipient]
        take = (
            insert(counters)
            .values(recipient=recipient, value=len(ids))
            .on_conflict_do_update(index_elements=[counters.c.recipient], set_={"value": counters.c.value + len(ids)})
            .returning(counters.c.value)
        )
        top = int(connection.execute(take).scalar_one())
        connection.execute(
            update(packets).where(packets.c.packet_id == bindparam("pid")).values(seq=bindparam("number")),
            [{"pid": pid, "number": top - len(ids) + 1 + i} for i, pid in enumerate(ids)],
        )


# On the ORM Session class itself, so every session (sqlmodel's is a subclass) numbers its changes.
event.listen(OrmSession, "before_commit", _number_pending)


def encode_cursor(seq: int) -> str:
    """Opaque to clients: they pass it back as it is."""
    return _CURSOR_PREFIX + base64.urlsafe_b64encode(str(seq).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    """Returns the feed number in a cursor this gateway issued, or None for anything else."""
    if not cursor.startswith(_CURSOR_PREFIX) or len(cursor) > 40:
        return None
    raw = cursor[len(_CURSOR_PREFIX) :]
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(text) if text.isdigit() else None
