"""The RFC 9162 §2.1 Merkle tree over audit entries: hashes, roots, and both kinds of proof.

Leaves are passed around as leaf hashes (`leaf_hash(entry_bytes)`), never as entries, so
that a proof can be built from the stored hashes alone. SHA-256 is the hash, as in
RFC 6962 and in RFC 9162's initial hash-algorithm registry.

The recursive definitions in the RFC split a range of n leaves at k, the largest power of
two smaller than n. Everything here computes the same thing without recursion:
- a root is built by hashing adjacent pairs level by level, carrying an odd last node up
  unchanged (that yields exactly the RFC's left-heavy shape);
- `IncrementalTree` keeps only the right frontier (one perfect subtree per set bit of
  the size), which is how a verifier streams millions of entries in O(log n) memory;
- the proofs walk the RFC's split points from the top down over index ranges.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from itertools import islice

HASH_SIZE = 32
_sha256 = hashlib.sha256

# RFC 9162 §2.1.1: MTH({}) = HASH(), the hash of the empty string.
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Returns MTH({d}) = SHA-256(0x00 || d), RFC 9162 §2.1.1."""
    h = _sha256(b"\x00")
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Returns SHA-256(0x01 || left || right), an interior node of RFC 9162 §2.1.1."""
    return _sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(leaves: Sequence[bytes]) -> bytes:
    """Returns MTH(D[n]) (RFC 9162 §2.1.1) for these leaf hashes; EMPTY_ROOT for none."""
    return _range_root(leaves, 0, len(leaves))


def _range_root(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """Returns MTH(D[lo:hi]) by pairwise reduction, one level at a time (no recursion, no slicing)."""
    n = hi - lo
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[lo]
    sha = _sha256
    # zip(it, it) pairs adjacent nodes; an odd last node is carried up unchanged (RFC's k split).
    it = iter(leaves) if lo == 0 and hi == len(leaves) else islice(leaves, lo, hi)
    level = [sha(b"\x01" + left + right).digest() for left, right in zip(it, it, strict=False)]
    if n & 1:
        level.append(leaves[hi - 1])
    while len(level) > 1:
        it = iter(level)
        upper = [sha(b"\x01" + left + right).digest() for left, right in zip(it, it, strict=False)]
        if len(level) & 1:
            upper.append(level[-1])
        level = upper
    return level[0]


class IncrementalTree:
    """An append-only tree that keeps only its right frontier: O(log n) memory, O(1) amortised append.

    `_frontier[i]` is the root of a perfect subtree; their sizes are the set bits of `size`,
    largest (leftmost) first, so `root()` folds them right to left as RFC 9162 §2.1.1 does.
    """

    __slots__ = ("_frontier", "_size")

    def __init__(self) -> None:
        self._frontier: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Returns the number of leaves appended so far."""
        return self._size

    def append(self, leaf: bytes) -> None:
        """Adds one leaf hash; merges equal-sized subtrees as the binary size carries."""
        frontier = self._frontier
        carry = self._size
        node = leaf
        while carry & 1:
            node = _sha256(b"\x01" + frontier.pop() + node).digest()
            carry >>= 1
        frontier.append(node)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Adds many leaf hashes; the same as repeated `append`, with the loop kept local for speed."""
        frontier = self._frontier
        pop = frontier.pop
        push = frontier.append
        sha = _sha256
        size = self._size
        for node in leaves:
            carry = size
            while carry & 1:
                node = sha(b"\x01" + pop() + node).digest()
                carry >>= 1
            push(node)
            size += 1
        self._size = size

    def root(self) -> bytes:
        """Returns MTH of all leaves appended so far (EMPTY_ROOT when there are none)."""
        frontier = self._frontier
        if not frontier:
            return EMPTY_ROOT
        node = frontier[-1]
        for i in range(len(frontier) - 2, -1, -1):
            node = _sha256(b"\x01" + frontier[i] + node).digest()
        return node


def _split(n: int) -> int:
    """Returns k, the largest power of two smaller than n (n > 1), RFC 9162 §2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


class ProofError(LookupError):
    """No proof can be given: the entry or tree size is outside the log, or the log is damaged there."""


def path_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Returns the leaf ranges whose roots make PATH(index, D[size]) (RFC 9162 §2.1.3.1), leaf first."""
    ranges: list[tuple[int, int]] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            ranges.append((lo + k, hi))  # PATH(m, D[0:k]) : MTH(D[k:n])
            hi = lo + k
        else:
            ranges.append((lo, lo + k))  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            lo, m = lo + k, m - k
    ranges.reverse()  # the split points were visited root first; the RFC lists them leaf first
    return ranges


def consistency_ranges(old_size: int, size: int) -> list[tuple[int, int]]:
    """Returns the leaf ranges whose roots make PROOF(old_size, D[size]) (RFC 9162 §2.1.4.1); none when
    old_size is 0 or size (nothing to prove)."""
    if old_size in (0, size):
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, size, old_size, True
    # SUBPROOF(m, D[lo:hi], whole) unrolled: each step either ends the walk or narrows the range.
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            hi = lo + k
        else:
            ranges.append((lo, lo + k))  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            lo, m, whole = lo + k, m - k, False
    if not whole:
        # SUBPROOF(m, D[m], false) = {MTH(D[m])}; with b true the old root is known and left out.
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Returns PATH(index, D[n]) (RFC 9162 §2.1.3.1), the audit path ordered from the leaf up.

    Raises IndexError when index is not in [0, n).
    """
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf index {index} is outside a tree of {n} leaves")
    return [_range_root(leaves, lo, hi) for lo, hi in path_ranges(index, n)]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Returns True if `proof` puts `leaf` at `index` in the tree (`size`, `root`), RFC 9162 §2.1.3.2."""
    if not 0 <= index < size or not _hashes_ok(proof) or len(leaf) != HASH_SIZE:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Returns PROOF(old_size, D[n]) (RFC 9162 §2.1.4.1) that D[0:old_size] is a prefix of D[n].

    The RFC defines it for 0 < old_size < n; for old_size == 0 or old_size == n the proof is
    empty (nothing to prove). Raises ValueError when old_size is outside [0, n].
    """
    n = len(leaves)
    if not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size} is outside [0, {n}]")
    return [_range_root(leaves, lo, hi) for lo, hi in consistency_ranges(old_size, n)]


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """Returns True if `proof` shows the tree (old_size, old_root) is a prefix of (new_size, new_root).

    RFC 9162 §2.1.4.2 for 0 < old_size < new_size. The two cases the RFC leaves out take an
    empty proof: equal sizes need equal roots, and the empty tree (root EMPTY_ROOT) is a
    prefix of every tree.
    """
    if not 0 <= old_size <= new_size or not _hashes_ok(proof):
        return False
    if len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE:
        return False
    if old_size == 0:
        return not proof and hmac.compare_digest(old_root, EMPTY_ROOT)
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    # 1. An empty path proves nothing.
    if not proof:
        return False
    # 2. If old_size is an exact power of two, the old root itself starts the path.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3-4.
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


def _hashes_ok(proof: Sequence[bytes]) -> bool:
    """Returns True if every proof element is a bytes value of the hash length."""
    return all(isinstance(p, bytes) and len(p) == HASH_SIZE for p in proof)


class RangeRoots:
    """Roots of disjoint leaf ranges, built while the leaves stream past once (O(log n) memory each):
    how a proof is made from a stored log without holding its leaves."""

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
