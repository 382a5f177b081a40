"""audit/checkpoint.py: C2SP signed-note checkpoints, checked against Go's sumdb/note vector."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    key_id,
    load_verifier_key,
    open_note,
    parse_and_verify,
    sign_checkpoint,
    sign_note,
    verifier_key_string,
)
from audit.merkle import EMPTY_ROOT, leaf_hash, root_from_leaf_hashes

KEY_NAME = "sp-gateway.example/audit"
PRIVATE_KEY = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"test key seed").digest())
PUBLIC_KEY = PRIVATE_KEY.public_key()
ROOT = root_from_leaf_hashes([leaf_hash(b"one"), leaf_hash(b"two"), leaf_hash(b"three")])
CHECKPOINT = Checkpoint(origin="sp-gateway.example/audit", size=3, root=ROOT)

# golang.org/x/mod/sumdb/note's documented example (note.go package comment and note_test.go):
# an independent implementation of the same signed-note format, byte for byte.
GO_SIGNER_KEY_SEED = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # 0x01 || Ed25519 seed
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIGNATURE = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
GO_NOTE = f"{GO_TEXT}\n— PeterNeumann {GO_SIGNATURE}\n"


def raw(public_key: object) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)  # type: ignore[attr-defined]


def test_sign_then_parse_round_trips_the_checkpoint() -> None:
    note = sign_checkpoint(CHECKPOINT, KEY_NAME, PRIVATE_KEY)
    assert parse_and_verify(note, KEY_NAME, PUBLIC_KEY) == CHECKPOINT


def test_note_has_the_c2sp_layout() -> None:
    note = sign_checkpoint(CHECKPOINT, KEY_NAME, PRIVATE_KEY)
    body, signature_line = note.split("\n\n")
    assert body.split("\n") == [CHECKPOINT.origin, "3", base64.b64encode(ROOT).decode()]
    assert signature_line.startswith(f"\u2014 {KEY_NAME} ")
    assert signature_line.endswith("\n")
    blob = base64.b64decode(signature_line.split(" ")[2])
    expected_id = hashlib.sha256(KEY_NAME.encode() + b"\n\x01" + raw(PUBLIC_KEY)).digest()[:4]
    assert blob[:4] == expected_id == key_id(KEY_NAME, PUBLIC_KEY)
    assert len(blob) == 4 + 64
    PUBLIC_KEY.verify(blob[4:], (body + "\n").encode())  # the signature covers the text with its final newline


def test_empty_tree_checkpoint_round_trips() -> None:
    empty = Checkpoint(origin="sp-gateway.example/audit", size=0, root=EMPTY_ROOT)
    note = sign_checkpoint(empty, KEY_NAME, PRIVATE_KEY)
    assert "\n0\n" in note
    assert parse_and_verify(note, KEY_NAME, PUBLIC_KEY) == empty


def test_signing_matches_go_sumdb_note_byte_for_byte() -> None:
    seed = base64.b64decode(GO_SIGNER_KEY_SEED)
    assert seed[0] == 1
    go_key = Ed25519PrivateKey.from_private_bytes(seed[1:])
    assert sign_note(GO_TEXT, "PeterNeumann", go_key) == GO_NOTE
    assert verifier_key_string("PeterNeumann", go_key.public_key()) == GO_VERIFIER_KEY


def test_go_verifier_key_loads_and_opens_the_go_note() -> None:
    name, public_key = load_verifier_key(GO_VERIFIER_KEY)
    assert name == "PeterNeumann"
    assert open_note(GO_NOTE, name, public_key) == GO_TEXT
    with pytest.raises(CheckpointError, match="does not verify"):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), name, public_key)


def test_verifier_key_whose_base64_contains_a_plus_loads() -> None:
    # transparency-dev/formats note tests: a type 0x01 key whose base64 has a '+' in it.
    name, public_key = load_verifier_key("TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6")
    assert name == "TEST"
    assert verifier_key_string(name, public_key) == "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"


def test_verifier_key_string_round_trips() -> None:
    vkey = verifier_key_string(KEY_NAME, PUBLIC_KEY)
    name, public_key = load_verifier_key(vkey)
    assert name == KEY_NAME
    assert raw(public_key) == raw(PUBLIC_KEY)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v.replace("+", "-", 1),
        lambda v: v + "+extra",
        lambda v: "+".join(v.split("+", 2)[:2]) + "+" + base64.b64encode(b"\x02" + bytes(32)).decode(),
        lambda v: v.split("+", 2)[0] + "+00000000+" + v.split("+", 2)[2],
        lambda v: v.split("+", 2)[0] + "+" + v.split("+", 2)[1].upper() + "+" + v.split("+", 2)[2],
        lambda v: v[:-4],
        lambda v: "+" + v.split("+", 1)[1],
        lambda v: "other" + v,
        lambda v: v.replace("+", " +", 1),
    ],
    ids=[
        "no-plus",
        "extra-part",
        "wrong-type",
        "wrong-id",
        "upper-hex",
        "short-key",
        "empty-name",
        "renamed",
        "space-in-name",
    ],
)
def test_mangled_verifier_keys_are_refused(mangle: object) -> None:
    vkey = verifier_key_string(KEY_NAME, PUBLIC_KEY)
    with pytest.raises(CheckpointError):
        load_verifier_key(mangle(vkey))  # type: ignore[operator]


def test_tampered_body_is_rejected() -> None:
    note = sign_checkpoint(CHECKPOINT, KEY_NAME, PRIVATE_KEY)
    for tampered in (
        note.replace("\n3\n", "\n4\n", 1),
        note.replace(CHECKPOINT.origin, "evil.example/audit", 1),
        note.replace(base64.b64encode(ROOT).decode(), base64.b64encode(EMPTY_ROOT).decode(), 1),
    ):
        with pytest.raises(CheckpointError, match="does not verify"):
            parse_and_verify(tampered, KEY_NAME, PUBLIC_KEY)


def test_tampered_signature_is_rejected() -> None:
    note = sign_checkpoint(CHECKPOINT, KEY_NAME, PRIVATE_KEY)
    body, line = note.split("\n\n")
    blob = bytearray(base64.b64decode(line.split(" ")[2]))
    blob[10] ^= 1
    tampered = f"{body}\n\n\u2014 {KEY_NAME} {base64.b64encode(bytes(blob)).decode()}\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        parse_and_verify(tampered, KEY_NAME, PUBLIC_KEY)


def test_signature_under_another_key_name_is_not_accepted() -> None:
    note = sign_checkpoint(CHECKPOINT, "someone-else.example/log", PRIVATE_KEY)
    with pytest.raises(CheckpointError, match="no signature by the known key"):
        parse_and_verify(note, KEY_NAME, PUBLIC_KEY)
    renamed = sign_checkpoint(CHECKPOINT, KEY_NAME, PRIVATE_KEY).replace(f" {KEY_NAME} ", " other.example/x ")
    with pytest.raises(CheckpointError, match="no signature by the known key"):
        parse_and_verify(renamed, KEY_NAME, PUBLIC_KEY)


def test_signature_by_another_key_with_our_name_is_not_accepted() -> None:
    impostor = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"impostor").digest())
    note = sign_checkpoint(CHECKPOINT, KEY_NAME, impostor)
    with pytest.raises(CheckpointError, match="no signature by the known key"):
        parse_and_verify(note, KEY_NAME, PUBLIC_KEY)


def test_unknown_cosignatures_are_ignored() -> None:
    witness = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"witness").digest())
    ours = sign_checkpoint(CHECKPOINT, KEY_NAME, PRIVATE_KEY)
    theirs = sign_checkpoint(CHECKPOINT, "witness.example/w1", witness)
    cosigned = theirs + ours.split("\n\n")[1]
    assert parse_and_verify(cosigned, KEY_NAME, PUBLIC_KEY) == CHECKPOINT
    assert parse_and_verify(cosigned, "witness.example/w1", witness.public_key()) == CHECKPOINT


@pytest.mark.parametrize(
    "body",
    [
        "sp-gateway.example/audit\n03\n{root}\n",
        "sp-gateway.example/audit\n-3\n{root}\n",
        "sp-gateway.example/audit\n+3\n{root}\n",
        "sp-gateway.example/audit\n３\n{root}\n",
        "sp-gateway.example/audit\n3\n{short}\n",
        "sp-gateway.example/audit\n3\n{root}\nextension line\n",
        "sp-gateway.example/audit\n3\n",
    ],
    ids=["leading-zero", "negative", "plus-sign", "fullwidth-digit", "short-root", "extension", "two-lines"],
)
def test_malformed_bodies_are_rejected_even_when_signed(body: str) -> None:
    text = body.format(root=base64.b64encode(ROOT).decode(), short=base64.b64encode(ROOT[:31]).decode())
    note = sign_note(text, KEY_NAME, PRIVATE_KEY)
    with pytest.raises(CheckpointError):
        parse_and_verify(note, KEY_NAME, PUBLIC_KEY)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda n: n.replace("\n\n", "\n", 1),
        lambda n: n[:-1],
        lambda n: n.replace("\u2014", "-", 1),
        lambda n: n.replace("\u2014 ", "\u2014  ", 1),
        lambda n: n.replace("\n", "\r\n"),
        lambda n: n[: n.rindex(" ") + 1] + "not base64!\n",
        lambda n: n[: n.rindex(" ") + 1] + "AAAA\n",
    ],
    ids=["no-blank-line", "no-final-newline", "hyphen", "double-space", "crlf", "bad-base64", "short-signature"],
)
def test_malformed_notes_are_rejected(mangle: object) -> None:
    note = sign_checkpoint(CHECKPOINT, KEY_NAME, PRIVATE_KEY)
    with pytest.raises(CheckpointError):
        parse_and_verify(mangle(note), KEY_NAME, PUBLIC_KEY)  # type: ignore[operator]


def test_non_canonical_base64_root_is_rejected() -> None:
    encoded = base64.b64encode(ROOT).decode()
    assert encoded.endswith("=")
    # Flip the unused low bits of the last base64 digit: same bytes, second spelling.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = encoded[-2]
    twin = encoded[:-2] + alphabet[alphabet.index(last) ^ 1] + "="
    assert base64.b64decode(twin) == ROOT
    note = sign_note(f"{CHECKPOINT.origin}\n3\n{twin}\n", KEY_NAME, PRIVATE_KEY)
    with pytest.raises(CheckpointError, match="canonical"):
        parse_and_verify(note, KEY_NAME, PUBLIC_KEY)


@pytest.mark.parametrize(
    "checkpoint",
    [
        Checkpoint(origin="", size=1, root=ROOT),
        Checkpoint(origin="two\nlines", size=1, root=ROOT),
        Checkpoint(origin="ok", size=-1, root=ROOT),
        Checkpoint(origin="ok", size=1, root=ROOT[:16]),
    ],
    ids=["empty-origin", "newline-origin", "negative-size", "short-root"],
)
def test_invalid_checkpoints_are_not_signed(checkpoint: Checkpoint) -> None:
    with pytest.raises(CheckpointError):
        sign_checkpoint(checkpoint, KEY_NAME, PRIVATE_KEY)


@pytest.mark.parametrize("name", ["", "has space", "has+plus", "tab\tname", "nbsp\u00a0name"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(CheckpointError):
        sign_checkpoint(CHECKPOINT, name, PRIVATE_KEY)


def test_checkpoint_error_is_a_value_error() -> None:
    assert issubclass(CheckpointError, ValueError)
