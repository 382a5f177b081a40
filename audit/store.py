"""The audit log's tables and the one way to append to it.

Each entry gets the next gap-free sequence number and its RFC 9162 leaf hash
(SHA-256(0x00 || canonical JSON)). The sequence comes from the single `audit_head` row,
locked for the rest of the writer's transaction (`SELECT ... FOR UPDATE` on PostgreSQL;
SQLite's BEGIN IMMEDIATE already serialises writers), so concurrent writers on several
workers queue for one number each and a rolled-back action leaves no entry and no gap.
The search columns are derived from the entry with `index_fields`; `verify` derives them
again, so an edited index is caught as surely as an edited entry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, CursorResult, Executable, Text, insert, update
from sqlmodel import Field, Session, SQLModel

from audit.canonical import canonical_json
from audit.events import index_fields
from audit.merkle import leaf_hash


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    leaf_hash: str = Field(max_length=64)
    content: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # None once archived
    archived_in: str | None = Field(default=None, max_length=100)
    recorded: datetime = Field(index=True)
    type_code: str = Field(max_length=64, index=True)
    subtype_code: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=1)
    outcome: str = Field(max_length=2)
    patient_nhs: str | None = Field(default=None, max_length=10, index=True)
    recipient_org: str | None = Field(default=None, max_length=64, index=True)
    agent_orgs: str = Field(default="", sa_column=Column(Text, nullable=False))
    entity_refs: str = Field(default="", sa_column=Column(Text, nullable=False))


class AuditHead(SQLModel, table=True):
    """One row: how many entries the log holds. Locked by every writer to take the next number."""

    __tablename__ = "audit_head"
    id: int = Field(default=1, primary_key=True)
    size: int = 0


class AuditCheckpointRecord(SQLModel, table=True):
    """Signed checkpoints the gateway has issued (the note is what third parties keep)."""

    __tablename__ = "audit_checkpoint"
    size: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    root_hex: str = Field(max_length=64)
    note: str = Field(sa_column=Column(Text, nullable=False))
    created: datetime


def index_columns(event: dict[str, Any]) -> dict[str, Any]:
    """Returns the search columns of an entry, as stored (derived, never supplied by a caller)."""
    fields = index_fields(event)
    recorded = datetime.fromisoformat(str(fields["recorded"]).replace("Z", "+00:00")).astimezone(UTC)
    return {
        "recorded": recorded,
        "type_code": fields["type_code"],
        "subtype_code": fields.get("subtype_code"),
        "action": fields["action"],
        "outcome": str(fields["outcome"]),
        "patient_nhs": fields.get("patient_nhs"),
        "recipient_org": fields.get("recipient_org"),
        "agent_orgs": " ".join(fields.get("agent_orgs") or []),
        "entity_refs": " ".join(fields.get("entity_refs") or []),
    }


def ensure_head(session: Session) -> None:
    if session.get(AuditHead, 1) is None:
        session.add(AuditHead(id=1, size=0))
        session.flush()


def append(session: Session, event: dict[str, Any]) -> int:
    """Appends one AuditEvent in the caller's transaction; returns its sequence number.

    `UPDATE audit_head SET size = size + 1 ... RETURNING size` takes the head row's lock until the
    caller's transaction ends, so concurrent writers queue for one number each; a rollback undoes
    both the increment and the entry, so the sequence stays gap-free.
    """
    size = _execute(session, _TAKE_NUMBER).scalar_one_or_none()
    if size is None:
        ensure_head(session)
        size = _execute(session, _TAKE_NUMBER).scalar_one()
    seq = size - 1
    event = dict(event, id=str(seq))
    content = canonical_json(event)
    _execute(
        session,
        _INSERT_ENTRY,
        {
            "seq": seq,
            "leaf_hash": leaf_hash(content).hex(),
            "content": content.decode(),
            "archived_in": None,
            **index_columns(event),
        },
    )
    return seq


def _execute(session: Session, statement: Executable, params: Any = None) -> CursorResult[Any]:
    """`session.execute` for a Core statement without the ORM's per-statement cost; autoflushes as it does.
    (The same helper as gateway.storage.repository.execute: audit/ does not import gateway/.)"""
    if session.autoflush:
        session.flush()
    return session.connection().execute(statement, params)


_HEAD = AuditHead.__table__  # type: ignore[attr-defined]
_TAKE_NUMBER = update(_HEAD).where(_HEAD.c.id == 1).values(size=_HEAD.c.size + 1).returning(_HEAD.c.size)
_INSERT_ENTRY = insert(AuditEntry.__table__)  # type: ignore[attr-defined]
