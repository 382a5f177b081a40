"""Signed checkpoints of the audit log and RFC 9162 inclusion proofs of its entries.

`make_checkpoint` signs the tree as it stood before the `audit-checkpoint-signed` event that
records the signing is appended: a checkpoint of size N covers entries 0..N-1, and the event
about it is entry N or later. `prove` gives an RFC 9162 inclusion proof for one entry. Both read
the stored leaf hashes from one snapshot; `spgw audit verify` (audit/verify.py) checks the entries
themselves. The signing key is passed in (a `Signer`): the gateway owns its keys.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session

from audit.checkpoint import Checkpoint, Signer, sign_checkpoint
from audit.events import AuditContext, system_event
from audit.merkle import IncrementalTree, ProofError, RangeRoots, path_ranges, verify_inclusion
from audit.snapshot import head_size, read_snapshot, stream
from audit.store import AuditCheckpointRecord, AuditEntry, append

__all__ = ["ProofError", "make_checkpoint", "prove", "tree_head"]


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


def make_checkpoint(engine: Engine, signer: Signer, *, ctx: AuditContext | None = None) -> str:
    """Returns a signed checkpoint note of the log as it stands, stores it and audits the signing.

    The tree is read from a snapshot first (size N, its root), then signed; the
    `audit-checkpoint-signed` event is appended afterwards, so it is entry N or later and is
    not covered by this checkpoint (the next one covers it). A checkpoint already issued for
    size N is returned as it is.
    """
    size, root = tree_head(engine)
    note = sign_checkpoint(Checkpoint(origin=signer.origin, size=size, root=root), signer.origin, signer.key)
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
