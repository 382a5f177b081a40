"""Checking the audit log end to end, signing checkpoints of it, and proving one entry is in it.

`verify_log` streams every entry in sequence order from one read snapshot (bounded memory:
the RFC 9162 tree keeps only its right frontier), in two passes, and names the first entry at fault:

    hashing pass, entry n ──▶ seq == n?  (gap, duplicate, row beyond the head)
            ──▶ SHA-256(0x00 || content) == stored leaf hash?      (edited entry)
            ──▶ leaf appended to the tree; at the checkpoint size the root is compared
    content pass, entry n ──▶ content.id == str(n)?              (entries swapped)
            ──▶ stored search columns == index_columns(content)?  (edited search column)
    end     ──▶ head size == entries seen?                         (deleted tail, inserted row)
            ──▶ consistency proof checkpoint ─▶ current tree      (RFC 9162 §2.1.4)

A rewrite that also recomputes the leaf hash passes every per-entry check (that is what a
hash chain cannot see on its own); only a checkpoint kept outside the gateway catches it,
because the root over the first `checkpoint.size` leaves then differs.

Archived entries (content NULL) keep their leaf hash, so the tree still closes; with a
segments folder their content is read back from the segment files and checked as well.

Reading the snapshot is audit/snapshot.py's job, the RFC 9162 ranges audit/merkle.py's, and
signed checkpoints and inclusion proofs audit/proofs.py's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import Connection, Engine, select

from audit.checkpoint import Checkpoint
from audit.merkle import EMPTY_ROOT, IncrementalTree, RangeRoots, consistency_ranges, verify_consistency
from audit.snapshot import STREAM_BATCH, head_size, read_snapshot, stream
from audit.store import AuditEntry, index_columns

Progress = Callable[[int, int], None]  # (work done, work in all): entries hashed plus entries read back
INDEX_NAMES = (
    "recorded",
    "type_code",
    "subtype_code",
    "action",
    "outcome",
    "patient_nhs",
    "recipient_org",
    "agent_orgs",
    "entity_refs",
)
ENTRY_COLUMNS = (
    AuditEntry.seq,
    AuditEntry.leaf_hash,
    AuditEntry.content,
    AuditEntry.archived_in,
    *(getattr(AuditEntry, name) for name in INDEX_NAMES),
)


@dataclass(frozen=True)
class ConsistencyCheck:
    """An RFC 9162 §2.1.4 consistency proof from a checkpoint to the tree as verified."""

    old_size: int
    new_size: int
    old_root: str
    new_root: str
    proof: list[str]
    ok: bool


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of `verify_log`; `problem` is plain English naming the first entry at fault."""

    ok: bool
    size: int
    root: str
    first_bad_seq: int | None = None
    problem: str | None = None
    checked_checkpoint: bool = False
    consistency: ConsistencyCheck | None = None
    archived_checked: int = 0
    archived_unchecked: int = 0

    def summary(self) -> str:
        """Returns the one-line summary the CLI prints."""
        if not self.ok:
            return f"audit log FAILED verification: {self.problem}"
        text = f"audit log intact: {self.size} entries, root {self.root}"
        if self.checked_checkpoint and self.consistency is not None:
            text += (
                f"; consistent with the checkpoint at size {self.consistency.old_size}"
                f" ({len(self.consistency.proof)}-hash consistency proof)"
            )
        if self.archived_checked or self.archived_unchecked:
            text += f"; archived entries checked against segments: {self.archived_checked}"
            if self.archived_unchecked:
                text += f", not checked (no segments given): {self.archived_unchecked}"
        return text


# --- verification ---------------------------------------------------------------------------------


class _Segments:
    """Reads archived content back from segment files, in sequence order, one open file at a time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._name: str | None = None
        self._handle: IO[bytes] | None = None

    def content(self, seq: int, name: str | None) -> str:
        """Returns the archived content of entry `seq`; raises ValueError saying what is wrong."""
        if not name:
            raise ValueError(f"entry {seq}: content is missing and the entry names no archive segment")
        if name != self._name:
            self.close()
            path = self.folder / name
            if path.name != name or not path.is_file():
                raise ValueError(f"entry {seq}: archived in segment {name}, which is not in {self.folder}")
            self._handle, self._name = path.open("rb"), name
        assert self._handle is not None
        line = self._handle.readline()
        if not line:
            raise ValueError(f"entry {seq}: segment {name} ends before this entry")
        try:
            record = orjson.loads(line)
            stored_seq, content = record["seq"], record["content"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"entry {seq}: segment {name} has an unreadable line where this entry should be") from None
        if stored_seq != seq or not isinstance(content, str):
            raise ValueError(f"entry {seq}: segment {name} holds entry {stored_seq} where this entry should be")
        return content

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle, self._name = None, None


def _as_utc(value: Any) -> Any:
    """Returns a datetime as aware UTC (a naive one is taken as UTC, as the gateway stores them)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _index_problem(seq: int, content: str, stored_index: Sequence[Any]) -> str | None:
    """Returns what is wrong with an entry's identity or search columns, or None."""
    try:
        entry = orjson.loads(content)
        derived = index_columns(entry)
    except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError, KeyError):
        return f"entry {seq}: content is not a readable AuditEvent"
    if entry.get("id") != str(seq):
        return f"entry {seq}: its content is entry {entry.get('id')!r} (entries were moved or swapped)"
    if tuple(derived.values()) != tuple(stored_index):  # the fast path: both sides in INDEX_NAMES order
        for name, stored, value in zip(INDEX_NAMES, stored_index, derived.values(), strict=True):
            if name == "recorded":
                stored, value = _as_utc(stored), _as_utc(value)
            if stored != value:
                return f"entry {seq}: search column {name} does not match the entry's content"
    return None


@dataclass
class _ChainResult:
    """What the hashing pass saw: how far the log is intact, and the tree over it."""

    expected: int
    tree: IncrementalTree
    proof_ranges: RangeRoots
    checkpoint_root: bytes | None
    archived_checked: int = 0
    archived_unchecked: int = 0
    failure: tuple[int | None, str] | None = None


def _chain_pass(
    conn: Connection,
    size: int,
    checkpoint: Checkpoint | None,
    segments: _Segments | None,
    progress: Progress | None = None,
) -> _ChainResult:
    """The hashing pass: sequence, leaf hashes and the tree, stopping at the first entry at fault.

    This is the cryptographic core (bench/audit_verify.py measures it against raw SHA-256): per
    entry one SHA-256 and a comparison, with no JSON parsing.
    """
    result = _ChainResult(
        expected=0,
        tree=IncrementalTree(),
        proof_ranges=RangeRoots(
            consistency_ranges(checkpoint.size, size) if checkpoint is not None and checkpoint.size <= size else []
        ),
        checkpoint_root=EMPTY_ROOT if checkpoint is not None and checkpoint.size == 0 else None,
    )
    cp_size = checkpoint.size if checkpoint is not None else -1
    tree, ranges = result.tree, result.proof_ranges
    has_ranges = checkpoint is not None
    # RFC 9162 leaf prefix, hashed once and copied per entry instead of concatenating bytes
    start_leaf = hashlib.sha256(b"\x00").copy
    expected = 0
    pending: list[bytes] = []  # leaves not yet in the tree: added a batch at a time (IncrementalTree.extend)
    keep = pending.append

    def fail(seq: int | None, problem: str) -> _ChainResult:
        tree.extend(pending)
        result.expected, result.failure = expected, (seq, problem)
        return result

    for batch in _leaf_batches(conn):
        for seq, stored_leaf, content, archived_in in batch:
            if seq != expected:
                if seq > expected:
                    return fail(expected, f"entry {expected} is missing (the next stored entry is {seq})")
                return fail(seq, f"entry {seq} appears more than once")
            if seq >= size:
                return fail(seq, f"entry {seq}: the head records {size} entries, so this row was added outside the log")
            if content is None:
                if segments is not None:
                    try:
                        content = segments.content(seq, archived_in).encode()
                    except ValueError as exc:
                        return fail(seq, str(exc))
                    result.archived_checked += 1
                else:
                    result.archived_unchecked += 1
            if content is None:
                leaf = bytes.fromhex(stored_leaf)
            else:
                h = start_leaf()
                h.update(content)
                leaf = h.digest()
                if leaf.hex() != stored_leaf:
                    return fail(seq, f"entry {seq}: content does not match its leaf hash")
            keep(leaf)
            if has_ranges:
                ranges.add(seq, leaf)
            expected += 1
            if expected == cp_size:
                tree.extend(pending)
                pending.clear()
                result.checkpoint_root = tree.root()
        tree.extend(pending)
        pending.clear()
        if progress is not None:
            progress(expected, 2 * size)  # once a batch: the hot loop stays free of calls
    result.expected = expected
    return result


# The hashing pass reads through the driver's own cursor, the content as bytes (no decoding and
# re-encoding, no SQLAlchemy row objects): it is the hot loop that bench/audit_verify.py measures.
_LEAF_ROWS_SQL = {
    "sqlite": "SELECT seq, leaf_hash, CAST(content AS BLOB), archived_in FROM audit_entry ORDER BY seq",
    "postgresql": "SELECT seq, leaf_hash, convert_to(content, 'UTF8'), archived_in FROM audit_entry ORDER BY seq",
}


def _leaf_batches(conn: Connection) -> Iterator[list[Any]]:
    """Yields batches of (seq, stored leaf hex, content bytes or None, archived_in) in sequence order."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    dialect = conn.dialect.name
    # A named (server-side) cursor on PostgreSQL, so a million rows never sit in memory at once.
    cursor = raw.cursor(name="spgw_verify") if dialect == "postgresql" else raw.cursor()  # type: ignore[call-arg]
    try:
        cursor.execute(_LEAF_ROWS_SQL.get(dialect, _LEAF_ROWS_SQL["postgresql"]))
        while batch := cursor.fetchmany(STREAM_BATCH):
            yield batch
    finally:
        cursor.close()


def _index_pass(conn: Connection, until: int, size: int, progress: Progress | None = None) -> tuple[int, str] | None:
    """The content pass: each entry below `until` names itself and matches its search columns."""
    query = (
        select(AuditEntry.seq, AuditEntry.content, *(getattr(AuditEntry, name) for name in INDEX_NAMES))
        .where(AuditEntry.seq < until, AuditEntry.content.is_not(None))  # type: ignore[union-attr]
        .order_by(AuditEntry.seq)  # type: ignore[arg-type]
    )
    for row in stream(conn, query):
        problem = _index_problem(row[0], row[1], row[2:])
        if problem is not None:
            return row[0], problem
        if progress is not None and row[0] % STREAM_BATCH == 0:
            progress(size + row[0], 2 * size)
    return None


def verify_log(
    engine: Engine,
    *,
    checkpoint: Checkpoint | None = None,
    segments_dir: Path | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Returns a report on the whole log; `checkpoint`, when given, must already be signature-checked.
    `progress`, when given, is called now and then with (work done, work in all).

    Two passes over one snapshot: the hashing pass (sequence, leaf hashes, tree) and the content
    pass (each entry's id and search columns); the entry at fault with the lowest number is named.
    """
    segments = _Segments(segments_dir) if segments_dir is not None else None
    with read_snapshot(engine) as conn:
        size = head_size(conn)
        try:
            chain = _chain_pass(conn, size, checkpoint, segments, progress)
        finally:
            if segments is not None:
                segments.close()
        first_broken = chain.failure[0] if chain.failure and chain.failure[0] is not None else chain.expected
        content_failure = _index_pass(conn, first_broken, size, progress)
    expected, tree = chain.expected, chain.tree

    def failed(seq: int | None, problem: str) -> VerifyReport:
        return VerifyReport(
            ok=False,
            size=expected,
            root=tree.root().hex(),
            first_bad_seq=seq,
            problem=problem,
            checked_checkpoint=checkpoint is not None,
        )

    if content_failure is not None:
        return failed(*content_failure)
    if chain.failure is not None:
        return failed(*chain.failure)
    if expected != size:
        return failed(
            expected,
            f"the head records {size} entries but {expected} are stored: "
            f"entries {expected}..{size - 1} were deleted from the end",
        )
    root = tree.root()
    report = VerifyReport(
        ok=True,
        size=expected,
        root=root.hex(),
        archived_checked=chain.archived_checked,
        archived_unchecked=chain.archived_unchecked,
    )
    if checkpoint is None:
        return report
    if checkpoint.size > expected:
        return failed(
            expected,
            f"truncated: the log holds {expected} entries but the checkpoint covers {checkpoint.size}; "
            f"entry {expected} onwards is gone",
        )
    assert chain.checkpoint_root is not None
    if chain.checkpoint_root != checkpoint.root:
        return failed(
            None,
            f"the first {checkpoint.size} entries no longer hash to the checkpoint's root: an entry below "
            f"{checkpoint.size} was rewritten together with its leaf hash",
        )
    proof = chain.proof_ranges.roots()
    consistent = verify_consistency(checkpoint.size, expected, checkpoint.root, root, proof)
    consistency = ConsistencyCheck(
        old_size=checkpoint.size,
        new_size=expected,
        old_root=checkpoint.root.hex(),
        new_root=root.hex(),
        proof=[p.hex() for p in proof],
        ok=consistent,
    )
    if not consistent:
        return VerifyReport(
            ok=False,
            size=expected,
            root=root.hex(),
            problem="the consistency proof from the checkpoint to the current tree does not verify",
            checked_checkpoint=True,
            consistency=consistency,
        )
    return VerifyReport(
        ok=True,
        size=expected,
        root=root.hex(),
        checked_checkpoint=True,
        consistency=consistency,
        archived_checked=chain.archived_checked,
        archived_unchecked=chain.archived_unchecked,
    )
