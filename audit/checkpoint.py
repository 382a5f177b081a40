"""Signed checkpoints of the audit log: C2SP tlog-checkpoint bodies in C2SP signed-note form.

A checkpoint is what we hand to a third party (an IG officer, a regulator, a witness) so
that they can later prove the log was only ever appended to:

    <origin>\\n<tree size>\\n<base64 root hash>\\n
    \\n
    — <key name> <base64(4-byte key ID || Ed25519 signature)>\\n

The signature covers the note text: the three body lines including the final newline
(c2sp.org/signed-note, "Format"). The key ID is the first four bytes of
SHA-256(key name || 0x0A || 0x01 || 32-byte public key) (signed-note, "Ed25519 signatures").
A verifier key is exchanged as `<name>+<hex key ID>+<base64(0x01 || public key)>`, the
vkey form of golang.org/x/mod/sumdb/note that C2SP notes use.

Our log never writes extension lines (tlog-checkpoint says they are NOT RECOMMENDED), so
a checkpoint carrying any is refused rather than half-understood.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.merkle import HASH_SIZE

ED25519_TYPE = b"\x01"  # signed-note signature type identifier for Ed25519
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 16  # signed-note: verifiers SHOULD cap, and MUST accept at least 16
_SIZE_RE = re.compile(r"\A(?:0|[1-9][0-9]*)\Z")  # ASCII decimal, no leading zeroes
_HEX_ID_RE = re.compile(r"\A[0-9a-f]{8}\Z")


class CheckpointError(ValueError):
    """A checkpoint or verifier key is malformed, signed by no known key, or badly signed."""


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: the log's origin line, its size in leaves, and its RFC 9162 root hash."""

    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        """Returns the signed note text (three lines, each ending in a newline); raises CheckpointError."""
        _check_line("origin", self.origin)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise CheckpointError("tree size must be a non-negative integer")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise CheckpointError(f"root hash must be {HASH_SIZE} bytes")
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode('ascii')}\n"


def key_id(key_name: str, public_key: Ed25519PublicKey) -> bytes:
    """Returns the 4-byte key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4] (signed-note)."""
    _check_key_name(key_name)
    return hashlib.sha256(key_name.encode("utf-8") + b"\n" + ED25519_TYPE + _raw(public_key)).digest()[:4]


def sign_note(text: str, key_name: str, private_key: Ed25519PrivateKey) -> str:
    """Returns `text` as a signed note with one Ed25519 signature by `key_name` (signed-note "Format")."""
    _check_note_text(text)
    kid = key_id(key_name, private_key.public_key())
    signature = private_key.sign(text.encode("utf-8"))
    return f"{text}\n{SIGNATURE_PREFIX}{key_name} {base64.b64encode(kid + signature).decode('ascii')}\n"


def open_note(note: str, key_name: str, public_key: Ed25519PublicKey) -> str:
    """Returns the note text once a signature by (key_name, public_key) verifies over it.

    Signatures from other keys are ignored, as signed-note requires. Raises CheckpointError
    for a malformed note, when no signature is from this key, or when this key's signature
    does not verify.
    """
    text, signature_lines = _split_note(note)
    wanted_id = key_id(key_name, public_key)
    found = False
    for line in signature_lines:
        name, kid, signature = _parse_signature_line(line)
        if name != key_name or kid != wanted_id:
            continue
        found = True
        try:
            public_key.verify(signature, text.encode("utf-8"))
        except InvalidSignature as exc:
            raise CheckpointError(f"signature by {key_name} does not verify") from exc
    if not found:
        raise CheckpointError(f"no signature by the known key {key_name}")
    return text


def sign_checkpoint(cp: Checkpoint, key_name: str, private_key: Ed25519PrivateKey) -> str:
    """Returns the signed note for `cp`, signed once with `private_key` under `key_name`."""
    return sign_note(cp.body(), key_name, private_key)


def parse_and_verify(note: str, key_name: str, public_key: Ed25519PublicKey) -> Checkpoint:
    """Returns the Checkpoint in `note` once a signature by (key_name, public_key) verifies.

    Raises CheckpointError as `open_note` does, and for a body that is not a checkpoint.
    """
    return _parse_body(open_note(note, key_name, public_key))


def verifier_key_string(key_name: str, public_key: Ed25519PublicKey) -> str:
    """Returns `<name>+<hex key ID>+<base64(0x01 || public key)>`, the key a verifier is given."""
    kid = key_id(key_name, public_key)
    encoded = base64.b64encode(ED25519_TYPE + _raw(public_key)).decode("ascii")
    return f"{key_name}+{kid.hex()}+{encoded}"


def load_verifier_key(s: str) -> tuple[str, Ed25519PublicKey]:
    """Returns (key name, public key) from a verifier key string; raises CheckpointError if it is wrong."""
    parts = s.strip().split("+", 2)  # the base64 key may itself contain '+'
    if len(parts) != 3:
        raise CheckpointError("a verifier key has the form <name>+<hex key ID>+<base64 key>")
    name, hex_id, encoded = parts
    _check_key_name(name)
    if not _HEX_ID_RE.match(hex_id):
        raise CheckpointError("key ID must be 8 lower-case hex digits")
    key_bytes = _b64decode(encoded, "verifier key")
    if len(key_bytes) != 1 + 32 or key_bytes[:1] != ED25519_TYPE:
        raise CheckpointError("verifier key is not an Ed25519 key (type 0x01 then 32 bytes)")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(key_bytes[1:])
    except ValueError as exc:
        raise CheckpointError("verifier key is not a valid Ed25519 public key") from exc
    if key_id(name, public_key) != bytes.fromhex(hex_id):
        raise CheckpointError("key ID does not match the key name and public key")
    return name, public_key


def _check_note_text(text: str) -> None:
    """Note text is UTF-8 text ending in a newline, with no control character but newline."""
    if not isinstance(text, str):
        raise CheckpointError("a signed note is text")
    if any(ch < " " and ch != "\n" for ch in text):
        raise CheckpointError("a signed note must not contain control characters other than newline")
    if not text.endswith("\n"):
        raise CheckpointError("note text ends with a newline")


def _split_note(note: str) -> tuple[str, list[str]]:
    """Returns (note text with its final newline, signature lines) per signed-note "Format"."""
    _check_note_text(note)
    cut = note.rfind("\n\n")  # the text is separated from the signatures by the last empty line
    if cut < 0:
        raise CheckpointError("no blank line between the note text and its signatures")
    text = note[: cut + 1]
    signature_lines = note[cut + 2 : -1].split("\n")
    if len(signature_lines) > MAX_SIGNATURES:
        raise CheckpointError(f"more than {MAX_SIGNATURES} signatures")
    return text, signature_lines


def _parse_signature_line(line: str) -> tuple[str, bytes, bytes]:
    """Returns (key name, key ID, signature) from `— <name> <base64>`."""
    if not line.startswith(SIGNATURE_PREFIX):
        raise CheckpointError("signature lines start with an em dash and a space")
    fields = line[len(SIGNATURE_PREFIX) :].split(" ")
    if len(fields) != 2:
        raise CheckpointError("a signature line is: em dash, space, key name, space, signature")
    name, encoded = fields
    _check_key_name(name)
    raw = _b64decode(encoded, "signature")
    if len(raw) < 5:
        raise CheckpointError("a signature holds a 4-byte key ID and the signature bytes")
    return name, raw[:4], raw[4:]


def _parse_body(text: str) -> Checkpoint:
    """Returns the Checkpoint that a verified note text describes (tlog-checkpoint "Note text")."""
    lines = text[:-1].split("\n")
    if len(lines) != 3:
        raise CheckpointError("a checkpoint has exactly three lines: origin, tree size, root hash")
    origin, size_text, root_text = lines
    _check_line("origin", origin)
    if not _SIZE_RE.match(size_text):
        raise CheckpointError("tree size must be ASCII decimal without leading zeroes")
    root = _b64decode(root_text, "root hash")
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"root hash must be {HASH_SIZE} bytes")
    return Checkpoint(origin=origin, size=int(size_text), root=root)


def _b64decode(text: str, what: str) -> bytes:
    """Decodes strict, canonical standard base64 (RFC 4648 §4), so one value has one spelling."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise CheckpointError(f"{what} is not standard base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw


def _check_line(what: str, value: object) -> None:
    if not isinstance(value, str) or not value or "\n" in value or any(ch < " " for ch in value):
        raise CheckpointError(f"{what} must be a non-empty single line of text")


def _check_key_name(name: object) -> None:
    """Key names are non-empty, with no Unicode spaces and no plus (signed-note "Format")."""
    if not isinstance(name, str) or not name or "+" in name or any(ch.isspace() for ch in name):
        raise CheckpointError("a key name is non-empty, without spaces or '+'")
    if any(ch < " " for ch in name):
        raise CheckpointError("a key name must not contain control characters")


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class Signer:
    """Who signs the log's checkpoints and segment notes: its origin line (also the key name) and the
    Ed25519 private key. The gateway owns its keys and hands one over; audit/ never reads a key folder."""

    origin: str
    key: Ed25519PrivateKey

    def verifier_key(self) -> str:
        """Returns the verifier key (`<name>+<hex id>+<base64 key>`) a third party needs to check notes."""
        return verifier_key_string(self.origin, self.key.public_key())

    def sign(self, text: str) -> str:
        """Returns `text` as a note signed by this signer."""
        return sign_note(text, self.origin, self.key)
