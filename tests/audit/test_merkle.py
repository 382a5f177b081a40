"""audit/merkle.py against the naive RFC 9162 oracle, published vectors, and tampering."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.merkle import (
    EMPTY_ROOT,
    IncrementalTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from tests.audit import rfc9162_reference as ref

MAX_EXHAUSTIVE = 70


def entries(n: int) -> list[bytes]:
    return [f"entry-{i}".encode() * (i % 5 + 1) for i in range(n)]


ENTRIES = entries(MAX_EXHAUSTIVE)
LEAVES = [leaf_hash(e) for e in ENTRIES]

# Certificate Transparency's reference inputs and tree heads for sizes 1..8 (RFC 6962 test
# data, carried unchanged into RFC 9162 since the hashing did not change).
CT_INPUTS_HEX = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657"]
CT_INPUTS_HEX.append("606162636465666768696a6b6c6d6e6f")
CT_INPUTS = [bytes.fromhex(h) for h in CT_INPUTS_HEX]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_PATH_0_OF_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]


def flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 1]) + b[1:]


# --- known answers -----------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_the_empty_string() -> None:
    expected = hashlib.sha256(b"").digest()
    assert expected == EMPTY_ROOT
    assert root_from_leaf_hashes([]) == expected
    assert IncrementalTree().root() == expected


def test_one_leaf_root_is_the_leaf_hash_with_zero_prefix() -> None:
    data = b'{"resourceType":"AuditEvent"}'
    expected = hashlib.sha256(b"\x00" + data).digest()
    assert leaf_hash(data) == expected
    assert root_from_leaf_hashes([expected]) == expected


def test_node_hash_prefixes_one_before_left_and_right() -> None:
    left, right = hashlib.sha256(b"l").digest(), hashlib.sha256(b"r").digest()
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert node_hash(left, right) != node_hash(right, left)


def test_roots_match_the_certificate_transparency_vectors() -> None:
    leaves = [leaf_hash(d) for d in CT_INPUTS]
    for size in range(1, 9):
        assert root_from_leaf_hashes(leaves[:size]).hex() == CT_ROOTS[size - 1]


def test_inclusion_path_matches_the_certificate_transparency_vector() -> None:
    leaves = [leaf_hash(d) for d in CT_INPUTS]
    assert [p.hex() for p in inclusion_proof(leaves, 0)] == CT_PATH_0_OF_8
    root = bytes.fromhex(CT_ROOTS[7])
    assert verify_inclusion(leaves[0], 0, 8, [bytes.fromhex(p) for p in CT_PATH_0_OF_8], root)


# --- against the RFC oracle, every small size ------------------------------------------------


def test_root_matches_rfc_reference_for_every_size_up_to_70() -> None:
    for n in range(MAX_EXHAUSTIVE + 1):
        assert root_from_leaf_hashes(LEAVES[:n]) == ref.MTH(ENTRIES[:n]), n


def test_incremental_tree_root_matches_rfc_reference_after_every_append() -> None:
    tree = IncrementalTree()
    assert tree.size == 0
    for n in range(1, MAX_EXHAUSTIVE + 1):
        tree.append(LEAVES[n - 1])
        assert tree.size == n
        assert tree.root() == ref.MTH(ENTRIES[:n]), n


def test_incremental_extend_equals_repeated_append() -> None:
    one, many = IncrementalTree(), IncrementalTree()
    for leaf in LEAVES[:37]:
        one.append(leaf)
    many.extend(LEAVES[:20])
    many.extend(iter(LEAVES[20:37]))
    assert many.size == one.size == 37
    assert many.root() == one.root() == ref.MTH(ENTRIES[:37])


def test_root_does_not_modify_the_callers_leaves() -> None:
    leaves = list(LEAVES[:13])
    root_from_leaf_hashes(leaves)
    assert leaves == LEAVES[:13]


def test_inclusion_proof_matches_rfc_path_for_every_size_and_index() -> None:
    for n in range(1, MAX_EXHAUSTIVE + 1):
        root = ref.MTH(ENTRIES[:n])
        for m in range(n):
            proof = inclusion_proof(LEAVES[:n], m)
            assert proof == ref.PATH(m, ENTRIES[:n]), (n, m)
            assert verify_inclusion(LEAVES[m], m, n, proof, root), (n, m)


def test_consistency_proof_matches_rfc_proof_for_every_size_pair() -> None:
    for n in range(1, MAX_EXHAUSTIVE + 1):
        new_root = ref.MTH(ENTRIES[:n])
        for m in range(1, n):
            proof = consistency_proof(LEAVES[:n], m)
            assert proof == ref.PROOF(m, ENTRIES[:n]), (m, n)
            assert verify_consistency(m, n, ref.MTH(ENTRIES[:m]), new_root, proof), (m, n)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=71, max_value=1500), st.data())
def test_proofs_match_rfc_reference_at_larger_random_sizes(n: int, data: st.DataObject) -> None:
    items = entries(n)
    leaves = [leaf_hash(e) for e in items]
    root = ref.MTH(items)
    assert root_from_leaf_hashes(leaves) == root
    tree = IncrementalTree()
    tree.extend(leaves)
    assert tree.root() == root
    m = data.draw(st.integers(min_value=0, max_value=n - 1), label="index")
    path = inclusion_proof(leaves, m)
    assert path == ref.PATH(m, items)
    assert verify_inclusion(leaves[m], m, n, path, root)
    old = data.draw(st.integers(min_value=1, max_value=n - 1), label="old_size")
    proof = consistency_proof(leaves, old)
    assert proof == ref.PROOF(old, items)
    assert verify_consistency(old, n, ref.MTH(items[:old]), root, proof)


# --- edge sizes the RFC leaves to the implementer ---------------------------------------------


def test_single_leaf_inclusion_has_an_empty_path() -> None:
    assert inclusion_proof(LEAVES[:1], 0) == []
    assert verify_inclusion(LEAVES[0], 0, 1, [], LEAVES[0])
    assert not verify_inclusion(LEAVES[1], 0, 1, [], LEAVES[0])


def test_inclusion_proof_refuses_an_index_outside_the_tree() -> None:
    with pytest.raises(IndexError):
        inclusion_proof(LEAVES[:5], 5)
    with pytest.raises(IndexError):
        inclusion_proof(LEAVES[:5], -1)
    with pytest.raises(IndexError):
        inclusion_proof([], 0)


def test_consistency_with_equal_sizes_needs_an_empty_proof_and_equal_roots() -> None:
    root = root_from_leaf_hashes(LEAVES[:9])
    assert consistency_proof(LEAVES[:9], 9) == []
    assert verify_consistency(9, 9, root, root, [])
    assert not verify_consistency(9, 9, root, flip(root), [])
    assert not verify_consistency(9, 9, root, root, [LEAVES[0]])


def test_the_empty_tree_is_consistent_with_every_tree() -> None:
    for n in (0, 1, 2, 7, 8, 64):
        root = root_from_leaf_hashes(LEAVES[:n])
        assert consistency_proof(LEAVES[:n], 0) == []
        assert verify_consistency(0, n, EMPTY_ROOT, root, [])
    assert not verify_consistency(0, 5, flip(EMPTY_ROOT), root_from_leaf_hashes(LEAVES[:5]), [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, root_from_leaf_hashes(LEAVES[:5]), [LEAVES[0]])


def test_consistency_proof_refuses_an_old_size_beyond_the_tree() -> None:
    with pytest.raises(ValueError, match="outside"):
        consistency_proof(LEAVES[:4], 5)
    with pytest.raises(ValueError, match="outside"):
        consistency_proof(LEAVES[:4], -1)


# --- tampering is caught ----------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(2, 0), (2, 1), (5, 4), (8, 3), (13, 6), (64, 63), (70, 0)])
def test_inclusion_is_rejected_for_tampered_proof_wrong_index_or_size(n: int, m: int) -> None:
    leaves = LEAVES[:n]
    root = root_from_leaf_hashes(leaves)
    proof = inclusion_proof(leaves, m)
    assert verify_inclusion(leaves[m], m, n, proof, root)
    for i in range(len(proof)):
        tampered = [*proof[:i], flip(proof[i]), *proof[i + 1 :]]
        assert not verify_inclusion(leaves[m], m, n, tampered, root)
    assert not verify_inclusion(flip(leaves[m]), m, n, proof, root)
    assert not verify_inclusion(leaves[m], m, n, proof, flip(root))
    assert not verify_inclusion(leaves[m], (m + 1) % n, n, proof, root)
    assert not verify_inclusion(leaves[m], m, 2 * n, proof, root)
    assert not verify_inclusion(leaves[m], n, n, proof, root)
    assert not verify_inclusion(leaves[m], m, n, [*proof, proof[0]], root)
    assert not verify_inclusion(leaves[m], m, n, proof[:-1], root)
    assert not verify_inclusion(leaves[m], m, n, [*proof[:-1], proof[-1][:31]], root)


def test_inclusion_rejects_any_size_whose_audit_path_has_another_length() -> None:
    # The root alone does not commit to the size (RFC 9162 §2.1.3.2 checks the path's
    # shape, and two sizes can share a shape): the signed checkpoint binds size to root.
    for n in range(1, 33):
        leaves = LEAVES[:n]
        root = root_from_leaf_hashes(leaves)
        for m in range(n):
            proof = inclusion_proof(leaves, m)
            for wrong in range(m + 1, 66):
                if len(ref.PATH(m, ENTRIES[:wrong])) != len(proof):
                    assert not verify_inclusion(leaves[m], m, wrong, proof, root), (n, m, wrong)


@pytest.mark.parametrize(("m", "n"), [(1, 2), (1, 8), (3, 8), (4, 8), (6, 8), (7, 13), (32, 70), (69, 70)])
def test_consistency_is_rejected_for_tampered_proof_or_sizes(m: int, n: int) -> None:
    old_root = root_from_leaf_hashes(LEAVES[:m])
    new_root = root_from_leaf_hashes(LEAVES[:n])
    proof = consistency_proof(LEAVES[:n], m)
    assert verify_consistency(m, n, old_root, new_root, proof)
    for i in range(len(proof)):
        tampered = [*proof[:i], flip(proof[i]), *proof[i + 1 :]]
        assert not verify_consistency(m, n, old_root, new_root, tampered)
    assert not verify_consistency(m, n, flip(old_root), new_root, proof)
    assert not verify_consistency(m, n, old_root, flip(new_root), proof)
    assert not verify_consistency(m, n, old_root, new_root, [])
    assert not verify_consistency(m, n, old_root, new_root, [*proof, proof[0]])
    assert not verify_consistency(m, 2 * n, old_root, new_root, proof)
    assert not verify_consistency(n, m, new_root, old_root, proof)
    if m > 1:
        assert not verify_consistency(m - 1, n, old_root, new_root, proof)


def test_consistency_rejects_a_history_that_was_rewritten() -> None:
    rewritten = list(LEAVES[:20])
    rewritten[3] = leaf_hash(b"an edited audit entry")
    old_root = root_from_leaf_hashes(LEAVES[:10])
    proof = consistency_proof(rewritten, 10)
    assert not verify_consistency(10, 20, old_root, root_from_leaf_hashes(rewritten), proof)
