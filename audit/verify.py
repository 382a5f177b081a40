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

`make_checkpoint` signs the tree as it stood before the `audit-checkpoint-signed` event that
records the signing is appended: a checkpoint of size N covers entries 0..N-1, and the event
about it is entry N or later. `prove` gives an RFC 9162 inclusion proof for one entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from audit.checkpoint import Checkpoint, sign_checkpoint, verifier_key_string
from audit.events import AuditContext, system_event
from audit.merkle import (
    EMPTY_ROOT,
    IncrementalTree,
    verify_consistency,
    verify_inclusion,
)
from audit.store import AuditCheckpointRecord, AuditEntry, AuditHead, append, index_columns

STREAM_BATCH = 5000  # rows fetched per round trip; memory stays bounded whatever the log's size
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


class ProofError(LookupError):
    """No proof can be given: the entry or tree size is outside the log, or the log is damaged there."""


class CheckpointSettings(Protocol):
    """What checkpoint signing needs from the gateway's settings."""

    audit_origin: str

    @property
    def keys_dir(self) -> Path: ...


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


# --- reading one consistent snapshot ------------------------------------------------------------


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """Yields a connection whose reads all see one snapshot of the database, without blocking writers.

    PostgreSQL: a REPEATABLE READ transaction. SQLite: the gateway's engine opens every
    transaction with BEGIN IMMEDIATE (the writer lock), which a minutes-long verify must not
    hold; a private engine opens a deferred transaction instead, which in WAL mode is a read
    snapshot that writers do not wait for.
    """
    if engine.dialect.name != "sqlite":
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            try:
                yield conn
            finally:
                conn.rollback()
        return
    reader = create_engine(engine.url, poolclass=NullPool, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(reader, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        dbapi_connection.execute("PRAGMA busy_timeout=30000")
        # Read the file through a memory map: a whole-log scan then skips copying every page
        # into SQLite's cache (about a fifth of the read time, measured by bench/audit_verify.py).
        dbapi_connection.execute("PRAGMA mmap_size=1073741824")

    @event.listens_for(reader, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN DEFERRED")

    try:
        with reader.connect() as conn:
            try:
                yield conn
            finally:
                conn.rollback()
    finally:
        reader.dispose()


def stream(conn: Connection, statement: Any) -> Iterator[Any]:
    """Returns the rows of `statement` fetched in batches (a server-side cursor on PostgreSQL)."""
    result = conn.execution_options(stream_results=True, yield_per=STREAM_BATCH).execute(statement)
    yield from result


def head_size(conn: Connection) -> int:
    """Returns the size the head row records (0 when there is no head row yet)."""
    size = conn.execute(select(AuditHead.size).where(AuditHead.id == 1)).scalar()
    return int(size or 0)


# --- tree helpers ---------------------------------------------------------------------------------


def _largest_power_of_two_below(n: int) -> int:
    """k of RFC 9162 §2.1.1: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def path_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Returns the leaf ranges whose roots make PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf first."""
    ranges: list[tuple[int, int]] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if m < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m = lo + k, m - k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, size: int) -> list[tuple[int, int]]:
    """Returns the leaf ranges whose roots make PROOF(old_size, D[size]) (RFC 9162 §2.1.4.1)."""
    if old_size in (0, size):
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, size, old_size, True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


class RangeRoots:
    """Roots of disjoint leaf ranges, built while the leaves stream past once (O(log n) memory each)."""

    def __init__(self, ranges: Sequence[tuple[int, int]]) -> None:
        self._ranges = list(ranges)
        self._order = sorted(range(len(self._ranges)), key=lambda i: self._ranges[i][0])
        self._trees = [IncrementalTree() for _ in self._ranges]
        self._pos = 0

    def add(self, index: int, leaf: bytes) -> None:
        """Feeds leaf `index`; leaves must come in index order."""
        order, ranges = self._order, self._ranges
        while self._pos < len(order) and ranges[order[self._pos]][1] <= index:
            self._pos += 1
        if self._pos < len(order):
            i = order[self._pos]
            if ranges[i][0] <= index:
                self._trees[i].append(leaf)

    def roots(self) -> list[bytes]:
        """Returns each range's root, in the order the ranges were given; raises ProofError if one is short."""
        for (lo, hi), tree in zip(self._ranges, self._trees, strict=True):
            if tree.size != hi - lo:
                raise ProofError(f"leaves {lo}..{hi - 1} are not all in the log")
        return [tree.root() for tree in self._trees]


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


# --- checkpoints and proofs ------------------------------------------------------------------------


def tree_head(engine: Engine, size: int | None = None) -> tuple[int, bytes]:
    """Returns (size, root) of the stored leaf hashes at `size` (default: the head's size)."""
    with read_snapshot(engine) as conn:
        current = head_size(conn)
        size = current if size is None else size
        if not 0 <= size <= current:
            raise ProofError(f"the log holds {current} entries; there is no tree of size {size}")
        tree = IncrementalTree()
        for seq, leaf_hex in stream(conn, _leaf_query(size)):
            if seq != tree.size:
                raise ProofError(f"entry {tree.size} is missing: run `spgw audit verify`")
            tree.append(bytes.fromhex(leaf_hex))
        if tree.size != size:
            raise ProofError(f"entries {tree.size}..{size - 1} are missing: run `spgw audit verify`")
        return size, tree.root()


def _leaf_query(size: int) -> Any:
    return select(AuditEntry.seq, AuditEntry.leaf_hash).where(AuditEntry.seq < size).order_by(AuditEntry.seq)  # type: ignore[arg-type,operator]


def _signing(settings: CheckpointSettings) -> tuple[str, Any]:
    from gateway.auth.keys import audit_signing_key  # the gateway owns its keys; only the key is borrowed

    return settings.audit_origin, audit_signing_key(settings.keys_dir)


def verifier_key(settings: CheckpointSettings) -> str:
    """Returns the verifier key (`<name>+<hex id>+<base64 key>`) a third party needs to check checkpoints."""
    name, key = _signing(settings)
    return verifier_key_string(name, key.public_key())


def make_checkpoint(engine: Engine, settings: CheckpointSettings, *, ctx: AuditContext | None = None) -> str:
    """Returns a signed checkpoint note of the log as it stands, stores it and audits the signing.

    The tree is read from a snapshot first (size N, its root), then signed; the
    `audit-checkpoint-signed` event is appended afterwards, so it is entry N or later and is
    not covered by this checkpoint (the next one covers it). A checkpoint already issued for
    size N is returned as it is.
    """
    size, root = tree_head(engine)
    origin, key = _signing(settings)
    note = sign_checkpoint(Checkpoint(origin=origin, size=size, root=root), origin, key)
    now = datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session:
        existing = session.get(AuditCheckpointRecord, size)
        if existing is not None:
            return existing.note
        session.add(AuditCheckpointRecord(size=size, root_hex=root.hex(), note=note, created=now))
        append(
            session,
            system_event(
                ctx or AuditContext(),
                activity="audit-checkpoint-signed",
                outcome=0,
                description=f"checkpoint signed over entries 0..{size - 1}: tree size {size}, root {root.hex()}",
                recorded=now,
            ),
        )
        session.commit()
    return note


def prove(engine: Engine, seq: int, *, size: int | None = None) -> dict[str, Any]:
    """Returns an RFC 9162 inclusion proof of entry `seq` in the tree of `size` leaves (default: all).

    Keys: seq, leaf_index, leaf_hash, tree_size, root, audit_path (hex, leaf first),
    checkpoint (the signed note for that size, or None), algorithm. Raises ProofError.
    """
    with read_snapshot(engine) as conn:
        current = head_size(conn)
        size = current if size is None else size
        if not 0 < size <= current:
            raise ProofError(f"the log holds {current} entries; there is no tree of size {size}")
        if not 0 <= seq < size:
            raise ProofError(f"entry {seq} is not in a tree of {size} entries")
        ranges = RangeRoots(path_ranges(seq, size))
        tree = IncrementalTree()
        leaf = b""
        for index, leaf_hex in stream(conn, _leaf_query(size)):
            if index != tree.size:
                raise ProofError(f"entry {tree.size} is missing: run `spgw audit verify`")
            node = bytes.fromhex(leaf_hex)
            if index == seq:
                leaf = node
            tree.append(node)
            ranges.add(index, node)
        if tree.size != size:
            raise ProofError(f"entries {tree.size}..{size - 1} are missing: run `spgw audit verify`")
        record = conn.execute(select(AuditCheckpointRecord.note).where(AuditCheckpointRecord.size == size)).scalar()
    path = ranges.roots()
    root = tree.root()
    if not verify_inclusion(leaf, seq, size, path, root):
        raise ProofError(f"the inclusion proof of entry {seq} does not verify: run `spgw audit verify`")
    return {
        "algorithm": "RFC 9162 Merkle tree, SHA-256; leaf = SHA-256(0x00 || entry content)",
        "seq": seq,
        "leaf_index": seq,
        "leaf_hash": leaf.hex(),
        "tree_size": size,
        "root": root.hex(),
        "audit_path": [p.hex() for p in path],
        "checkpoint": record,
    }
