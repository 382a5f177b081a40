"""The gateway's own keys: an ES384 key that signs access tokens (JWKS with `kid` for rotation)
and an Ed25519 key that signs audit checkpoints. Generated on first use under the data folder
with 0600 permissions; never in the repository.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.jwk import ECKey, KeySet

TOKEN_ALG = "ES384"  # noqa: S105 (an algorithm name, not a secret)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class TokenKeys:
    """The token-signing key ring: the newest key signs, every key in the ring still verifies."""

    def __init__(self, keys_dir: Path):
        self.path = keys_dir / "token-signing.jwks.json"
        if not self.path.exists():
            self.rotate()
        self._load()

    def _load(self) -> None:
        data = json.loads(self.path.read_text())
        self.keyset = KeySet.import_key_set(data)
        self.current = self.keyset.keys[0]

    def rotate(self, keep: int = 2) -> str:
        """Adds a new signing key in front, keeps the previous `keep - 1` for verification; returns its kid."""
        kid = "spgw-" + secrets.token_hex(6)
        new = ECKey.generate_key("P-384", parameters={"kid": kid, "alg": TOKEN_ALG, "use": "sig"}, private=True)
        old = json.loads(self.path.read_text())["keys"] if self.path.exists() else []
        keys = [new.as_dict(private=True), *old][:keep]
        _write_private(self.path, json.dumps({"keys": keys}).encode())
        self._load()
        return kid

    def public_jwks(self) -> dict:
        return {"keys": [k.as_dict(private=False) for k in self.keyset.keys]}


def audit_signing_key(keys_dir: Path) -> Ed25519PrivateKey:
    """Returns the Ed25519 key that signs audit checkpoints, creating it on first use."""
    path = keys_dir / "audit-checkpoint-ed25519.pem"
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_private(path, pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    return loaded
