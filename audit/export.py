"""Exporting audit entries recorded in a time window, as NDJSON or CSV; every export is itself audited.

NDJSON lines are the stored canonical bytes of each entry, unchanged, so that whoever receives
the file can recompute every leaf hash (SHA-256 of 0x00 || line) and check it against an
inclusion proof. Archived entries have no content in the database: NDJSON leaves them out and
counts them; CSV, built from the search columns, includes them with the segment they live in.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from audit.events import AuditContext, system_event
from audit.snapshot import read_snapshot, stream
from audit.store import AuditEntry, append

FORMATS = ("ndjson", "csv")
PROGRESS_EVERY = 1000  # rows between progress calls
CSV_HEADER = (
    "seq",
    "recorded",
    "type",
    "subtype",
    "action",
    "outcome",
    "patient_nhs",
    "recipient_org",
    "agent_orgs",
    "entity_refs",
    "leaf_hash",
    "archived_in",
)


@dataclass(frozen=True)
class ExportResult:
    written: int
    archived_left_out: int


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def export(
    engine: Engine,
    out: TextIO,
    *,
    start: datetime,
    end: datetime,
    fmt: str,
    ctx: AuditContext | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Writes the entries recorded in [start, end) to `out` in sequence order; returns what was written.

    Naive datetimes are taken as UTC. Raises ValueError for an unknown format or an empty window.
    `progress`, when given, is called every PROGRESS_EVERY rows with the rows read so far.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    lo, hi = _window(start, end)
    columns = (
        AuditEntry.seq,
        AuditEntry.content,
        AuditEntry.recorded,
        AuditEntry.type_code,
        AuditEntry.subtype_code,
        AuditEntry.action,
        AuditEntry.outcome,
        AuditEntry.patient_nhs,
        AuditEntry.recipient_org,
        AuditEntry.agent_orgs,
        AuditEntry.entity_refs,
        AuditEntry.leaf_hash,
        AuditEntry.archived_in,
    )
    query = (
        select(*columns)  # type: ignore[call-overload]
        .where(AuditEntry.recorded >= lo, AuditEntry.recorded < hi)
        .order_by(AuditEntry.seq)
    )
    written = left_out = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(CSV_HEADER)
    with read_snapshot(engine) as conn:
        for index, row in enumerate(stream(conn, query), start=1):
            if progress is not None and index % PROGRESS_EVERY == 0:
                progress(index)
            if writer is not None:
                recorded = _utc(row[2]).isoformat(timespec="microseconds").replace("+00:00", "Z")
                writer.writerow((row[0], recorded, *row[3:]))
            elif row[1] is None:
                left_out += 1
                continue
            else:
                out.write(row[1])
                out.write("\n")
            written += 1
    _audit(engine, ctx, f"{written} audit entries recorded {lo.isoformat()} to {hi.isoformat()} exported as {fmt}")
    return ExportResult(written=written, archived_left_out=left_out)


def _window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    lo, hi = _utc(start), _utc(end)
    if hi <= lo:
        raise ValueError("the end of the window must be after its start")
    return lo, hi


def count_in_window(engine: Engine, *, start: datetime, end: datetime) -> int:
    """Returns how many entries were recorded in [start, end): the total an export's progress counts to."""
    lo, hi = _window(start, end)
    with read_snapshot(engine) as conn:
        query = select(func.count()).select_from(AuditEntry).where(AuditEntry.recorded >= lo, AuditEntry.recorded < hi)
        return int(conn.execute(query).scalar() or 0)


def _audit(engine: Engine, ctx: AuditContext | None, description: str) -> None:
    with Session(engine) as session:
        append(
            session,
            system_event(
                ctx or AuditContext(),
                activity="audit-exported",
                outcome=0,
                description=description,
                recorded=datetime.now(UTC),
                action="R",
            ),
        )
        session.commit()
