"""Retention: moving the content of old audit entries out of the database into signed segment files.

    entries 0..k-1 (recorded before the cut-off, oldest first)
        ──▶ checkpoint signed over the whole log (anchors every leaf hash first)
        ──▶ segment file  audit-<first>-<last>.ndjson  one {"seq": n, "content": "<exact bytes>"} a line
        ──▶ segment note  audit-<first>-<last>.ndjson.note  signed: origin, name, range, SHA-256 of the file
        ──▶ content set to NULL, archived_in = the segment name (leaf hash and search columns stay)

The leaf hashes stay in the database, so the tree and every checkpoint still verify;
`spgw audit verify --segments DIR` reads the archived content back and checks it against them.
A segment is always a run of consecutive entries: archiving stops at the first entry recorded
on or after the cut-off, so each segment covers one range and verification reads it once.
Content is only cleared after its segment file is written, synced and checked.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, func, select, update
from sqlmodel import Session

from audit.checkpoint import CheckpointError, Signer, open_note
from audit.events import AuditContext, system_event
from audit.merkle import leaf_hash
from audit.proofs import make_checkpoint
from audit.snapshot import read_snapshot, stream
from audit.store import AuditEntry, append

SEGMENT_SUFFIX = ".ndjson"
NOTE_SUFFIX = ".note"


class RetentionSettings(Protocol):
    audit_retention_days: int


class ArchiveError(RuntimeError):
    """Archiving stopped: the log is damaged in the range, or the database changed under us."""


@dataclass(frozen=True)
class ArchiveResult:
    segment: str | None
    first_seq: int | None
    last_seq: int | None
    count: int
    sha256: str | None
    checkpoint: str | None


def segment_name(first: int, last: int) -> str:
    return f"audit-{first:012d}-{last:012d}{SEGMENT_SUFFIX}"


def _range(session: Session, cutoff: datetime) -> tuple[int, int] | None:
    """Returns [first, end) of live entries recorded before the cut-off, stopping at the first newer entry."""
    first = session.scalar(select(func.min(AuditEntry.seq)).where(AuditEntry.content.is_not(None)))  # type: ignore[union-attr]
    if first is None:
        return None
    newer = session.scalar(
        select(func.min(AuditEntry.seq)).where(AuditEntry.seq >= first, AuditEntry.recorded >= cutoff)
    )
    end = newer if newer is not None else session.scalar(select(func.max(AuditEntry.seq))) + 1
    return (first, end) if end > first else None


def _write_segment(engine: Engine, path: Path, first: int, end: int) -> str:
    """Writes entries [first, end) to `path` (synced), checking each against its leaf hash; returns SHA-256 hex."""
    digest = hashlib.sha256()
    partial = path.with_name(path.name + ".partial")
    expected = first
    query = (
        select(AuditEntry.seq, AuditEntry.content, AuditEntry.leaf_hash)  # type: ignore[call-overload]
        .where(AuditEntry.seq >= first, AuditEntry.seq < end)
        .order_by(AuditEntry.seq)
    )
    with read_snapshot(engine) as conn, partial.open("wb") as handle:
        for seq, content, stored_leaf in stream(conn, query):
            if seq != expected or content is None:
                raise ArchiveError(f"entry {expected} is missing or already archived: run `spgw audit verify`")
            if leaf_hash(content.encode()).hex() != stored_leaf:
                raise ArchiveError(f"entry {seq}: content does not match its leaf hash: run `spgw audit verify`")
            line = orjson.dumps({"seq": seq, "content": content}) + b"\n"
            handle.write(line)
            digest.update(line)
            expected += 1
        handle.flush()
        os.fsync(handle.fileno())
    if expected != end:
        raise ArchiveError(f"entries {expected}..{end - 1} are missing: run `spgw audit verify`")
    partial.replace(path)
    return digest.hexdigest()


def note_text(origin: str, name: str, first: int, last: int, sha256_hex: str) -> str:
    """Returns the text of a segment's signed note (one fact a line, as checkpoint notes are)."""
    return f"{origin}\nsegment {name}\nentries {first}-{last}\nsha256 {sha256_hex}\n"


def archive(
    engine: Engine,
    settings: RetentionSettings,
    signer: Signer,
    *,
    out_dir: Path,
    before: datetime | None = None,
    ctx: AuditContext | None = None,
) -> ArchiveResult:
    """Archives the content of entries recorded before `before` (default: the retention period ago)."""
    now = datetime.now(UTC)
    cutoff = before or now - timedelta(days=settings.audit_retention_days)
    cutoff = cutoff.astimezone(UTC) if cutoff.tzinfo else cutoff.replace(tzinfo=UTC)
    with Session(engine) as session:
        found = _range(session, cutoff)
    if found is None:
        return ArchiveResult(None, None, None, 0, None, None)
    first, end = found
    checkpoint = make_checkpoint(engine, signer, ctx=ctx)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = segment_name(first, end - 1)
    sha = _write_segment(engine, out_dir / name, first, end)
    note = signer.sign(note_text(signer.origin, name, first, end - 1, sha))
    (out_dir / (name + NOTE_SUFFIX)).write_text(note)
    with Session(engine) as session:
        cleared = session.connection().execute(
            update(AuditEntry)
            .where(AuditEntry.seq >= first, AuditEntry.seq < end, AuditEntry.content.is_not(None))  # type: ignore[union-attr]
            .values(content=None, archived_in=name)
        )
        if cleared.rowcount != end - first:
            session.rollback()
            raise ArchiveError("entries changed while archiving; nothing was cleared")
        append(
            session,
            system_event(
                ctx or AuditContext(),
                activity="audit-archived",
                outcome=0,
                description=f"content of entries {first}..{end - 1} moved to segment {name} (sha256 {sha})",
                recorded=now,
                action="U",
            ),
        )
        session.commit()
    return ArchiveResult(name, first, end - 1, end - first, sha, checkpoint)


def check_segment(path: Path, key_name: str, public_key: Ed25519PublicKey) -> str | None:
    """Returns what is wrong with a segment file and its signed note, or None when the note verifies."""
    note_path = path.with_name(path.name + NOTE_SUFFIX)
    if not note_path.is_file():
        return f"segment {path.name} has no signed note ({note_path.name})"
    try:
        text = open_note(note_path.read_text(), key_name, public_key)
    except CheckpointError as exc:
        return f"segment {path.name}: {exc}"
    lines = dict(line.split(" ", 1) for line in text.splitlines()[1:] if " " in line)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if lines.get("segment") != path.name:
        return f"segment {path.name}: its note is for {lines.get('segment')}"
    if lines.get("sha256") != digest.hexdigest():
        return f"segment {path.name}: the file's SHA-256 differs from the signed note"
    return None


def check_segments(folder: Path, key: tuple[str, Ed25519PublicKey]) -> list[str]:
    """Returns the problems found with every segment file in `folder` (empty when all verify)."""
    problems: list[str | None] = [check_segment(p, *key) for p in sorted(folder.glob(f"audit-*{SEGMENT_SUFFIX}"))]
    return [p for p in problems if p]
