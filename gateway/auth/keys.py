"""The gateway's own keys: an ES384 key that signs access tokens (JWKS with `kid` for rotation)
and an Ed25519 key that signs audit checkpoints, under the data folder with 0600 permissions;
never in the repository.

`spgw migrate` (or `spgw keys ...`) creates them, once; a serving process only loads them
(`create=False`) and refuses to start without them. A key file is created by linking a complete
temporary file into place, which fails if another process got there first: two processes
starting together end up with the same key, never one each.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.jwk import ECKey, KeySet

TOKEN_ALG = "ES384"  # noqa: S105 (an algorithm name, not a secret)
AUDIT_KEY_FILE = "audit-checkpoint-ed25519.pem"


class KeysMissing(RuntimeError):
    """A serving process found no key where `spgw migrate` puts it."""


def _missing(path: Path) -> KeysMissing:
    return KeysMissing(f"The gateway key {path} is missing: run `spgw migrate` first (it creates the keys once).")


def _write_temp(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return temp


def _write_private(path: Path, data: bytes) -> None:
    """Replaces `path` atomically: a reader sees the old file or the new one, never half of one."""
    os.replace(_write_temp(path, data), path)


def _create_private(path: Path, data: bytes) -> None:
    """Creates `path` unless it exists (then the existing file wins, whoever wrote it)."""
    temp = _write_temp(path, data)
    try:
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs stands
            os.link(temp, path)
    finally:
        temp.unlink()


class TokenKeys:
    """The token-signing key ring: the newest key signs, every key in the ring still verifies."""

    def __init__(self, keys_dir: Path, *, create: bool = True):
        self.path = keys_dir / "token-signing.jwks.json"
        if not self.path.exists():
            if not create:
                raise _missing(self.path)
            _create_private(self.path, json.dumps({"keys": [_new_token_key()]}).encode())
        self._load()

    def _load(self) -> None:
        data = json.loads(self.path.read_text())
        self.keyset = KeySet.import_key_set(data)
        self.current = self.keyset.keys[0]

    def rotate(self, keep: int = 2) -> str:
        """Adds a new signing key in front, keeps the previous `keep - 1` for verification; returns its kid."""
        new = _new_token_key()
        old = json.loads(self.path.read_text())["keys"] if self.path.exists() else []
        keys = [new, *old][:keep]
        _write_private(self.path, json.dumps({"keys": keys}).encode())
        self._load()
        return new["kid"]

    def public_jwks(self) -> dict:
        return {"keys": [k.as_dict(private=False) for k in self.keyset.keys]}


def _new_token_key() -> dict:
    kid = "spgw-" + secrets.token_hex(6)
    key = ECKey.generate_key("P-384", parameters={"kid": kid, "alg": TOKEN_ALG, "use": "sig"}, private=True)
    return key.as_dict(private=True)


def audit_signing_key(keys_dir: Path, *, create: bool = True) -> Ed25519PrivateKey:
    """Returns the Ed25519 key that signs audit checkpoints, creating it if `create` and it is missing."""
    path = keys_dir / AUDIT_KEY_FILE
    if not path.exists():
        if not create:
            raise _missing(path)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _create_private(path, pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    return loaded


def ensure_keys(keys_dir: Path) -> None:
    """Creates the token-signing ring and the checkpoint key if missing; leaves existing keys alone."""
    TokenKeys(keys_dir, create=True)
    audit_signing_key(keys_dir, create=True)


def require_keys(keys_dir: Path) -> TokenKeys:
    """Loads the keys a serving process needs, read-only; raises KeysMissing when one is absent."""
    audit_signing_key(keys_dir, create=False)
    return TokenKeys(keys_dir, create=False)
