"""A deliberately naive RFC 9162 §2.1 Merkle tree, written straight from the RFC text.

Used only by tests, as an independent oracle for audit/merkle.py: recursion and list
slicing exactly as the RFC writes MTH, PATH and PROOF/SUBPROOF, so that it can be checked
line by line against the standard. Inputs here are the entries themselves (D[n]), not
leaf hashes, again as in the RFC. Never fast, never clever.
"""

from __future__ import annotations

import hashlib


def HASH(data: bytes) -> bytes:  # the RFC's name for the hash function
    return hashlib.sha256(data).digest()


def largest_power_of_two_below(n: int) -> int:
    """k: the largest power of two smaller than n, n > 1 (RFC 9162 §2.1.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def MTH(D: list[bytes]) -> bytes:  # RFC 9162 §2.1.1 notation
    """MTH({}) = HASH(); MTH({d(0)}) = HASH(0x00 || d(0)); else HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    n = len(D)
    if n == 0:
        return HASH(b"")
    if n == 1:
        return HASH(b"\x00" + D[0])
    k = largest_power_of_two_below(n)
    return HASH(b"\x01" + MTH(D[0:k]) + MTH(D[k:n]))


def PATH(m: int, D: list[bytes]) -> list[bytes]:  # RFC 9162 §2.1.3.1
    """PATH(0, {d(0)}) = {}; else split at k and append the other side's MTH (`:` is list concatenation)."""
    n = len(D)
    if n == 1 and m == 0:
        return []
    k = largest_power_of_two_below(n)
    if m < k:
        return [*PATH(m, D[0:k]), MTH(D[k:n])]
    return [*PATH(m - k, D[k:n]), MTH(D[0:k])]


def SUBPROOF(m: int, D: list[bytes], b: bool) -> list[bytes]:  # RFC 9162 §2.1.4.1
    n = len(D)
    if m == n:
        return [] if b else [MTH(D)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return [*SUBPROOF(m, D[0:k], b), MTH(D[k:n])]
    return [*SUBPROOF(m - k, D[k:n], False), MTH(D[0:k])]


def PROOF(m: int, D: list[bytes]) -> list[bytes]:  # RFC 9162 §2.1.4.1
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true), defined for 0 < m < n."""
    return SUBPROOF(m, D, True)
