"""The client registry: register API clients, their role, scopes and public keys; rotate and retire keys.

A client authenticates with a JWT it signs with its own private key (RFC 7523 `private_key_jwt`); the
gateway stores only the public JWKS (RFC 7517 §5). When the gateway generates the key pair for a
client, the private JWK is written once to a file only its owner can read and never enters the database.
Every function raises ValueError for a request the registry must refuse; the caller owns the transaction.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, RSAKey, import_key
from sqlmodel import Session, select

from gateway.auth.principal import ROLE_SCOPES, Role, within_ceiling
from gateway.models import Client, Organisation

# Signature algorithms a client key may carry (RFC 7518 §3.1). ES384 is the default; RS384 for clients
# whose HSM or platform only does RSA; RS512 because the NHS API platform's signed-JWT guide uses it.
CLIENT_KEY_ALGS: tuple[str, ...] = ("ES384", "RS384", "RS512")
_GENERATED_ALGS = ("ES384", "RS384")
_RSA_GENERATED_BITS = 4096  # the size the NHS API platform asks integrators for
_RSA_MIN_BITS = 2048
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})  # RFC 7518 §6.2.2, §6.3.2, §6.4
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{1,100}")  # URL-safe: it travels in JWT iss/sub and form posts


def add_client(
    session: Session,
    *,
    client_id: str,
    organisation_id: str,
    role: Role,
    scopes: Collection[str] | None = None,
    public_jwks: dict[str, Any] | None = None,
    private_key_out: Path | None = None,
    alg: str = "ES384",
    ig_reads_clinical: bool = False,
    pending_approval: bool = False,
    registered_by: str | None = None,
    may_assert_end_user: bool = False,
) -> Client:
    """Returns the new client, with scopes inside its role's ceiling and either the given public JWKS
    or a freshly generated key pair whose private half is written to `private_key_out` (0600). A client
    added `pending_approval` stays inactive (no token) until `approve_client`."""
    if not _CLIENT_ID.fullmatch(client_id):
        raise ValueError("client_id must be 1-100 characters from A-Z a-z 0-9 . _ ~ -")
    role = Role(role)
    if session.get(Client, client_id) is not None:
        raise ValueError(f"client {client_id!r} already exists")
    if session.get(Organisation, organisation_id) is None:
        raise ValueError(f"organisation {organisation_id!r} is not registered")
    granted = _checked_scopes(role, scopes, ig_reads_clinical)
    if (public_jwks is None) == (private_key_out is None):
        raise ValueError("give exactly one of public_jwks (the client made its keys) or private_key_out")

    private: Key | None = None
    if public_jwks is not None:
        jwks = {"keys": _checked_public_keys(public_jwks)}
    else:
        assert private_key_out is not None
        _refuse_existing(private_key_out)
        private = _generate_key(alg)
        jwks = {"keys": [private.as_dict(private=False)]}

    client = Client(
        client_id=client_id,
        organisation_id=organisation_id,
        role=str(role),
        scopes=" ".join(sorted(granted)),
        jwks=jwks,
        active=not pending_approval,
        pending_approval=pending_approval,
        registered_by=registered_by,
        may_assert_end_user=may_assert_end_user,
    )
    session.add(client)
    session.flush()
    if private is not None:
        assert private_key_out is not None
        # Written after the row is flushed: if the file cannot be created the caller's transaction rolls back.
        _write_private_jwk(private_key_out, private)
    return client


def list_clients(session: Session) -> list[dict[str, Any]]:
    """Returns every client as {client_id, organisation, role, scopes, active, kids}, by client_id."""
    rows = session.exec(select(Client).order_by(Client.client_id)).all()
    return [
        {
            "client_id": row.client_id,
            "organisation": row.organisation_id,
            "role": row.role,
            "scopes": row.scopes.split(),
            "active": row.active,
            "pending_approval": row.pending_approval,
            "may_assert_end_user": row.may_assert_end_user,
            "kids": [key.get("kid") for key in row.jwks.get("keys", [])],
        }
        for row in rows
    ]


def approve_client(session: Session, client_id: str) -> Client:
    """Returns the client, now active: the operator has confirmed out of band, with the organisation,
    that the registered public keys are the organisation's own. Raises ValueError if nothing waits."""
    client = _existing(session, client_id)
    if not client.pending_approval:
        raise ValueError(f"client {client_id!r} is not waiting for approval")
    client.pending_approval, client.active = False, True
    session.add(client)
    session.flush()
    return client


def key_thumbprints(client: Client) -> list[str]:
    """Returns "kid: RFC 7638 SHA-256 thumbprint" of each registered key, to read out to the organisation."""
    out = []
    for data in client.jwks.get("keys", []):
        out.append(f"{data.get('kid')}: {import_key(data).thumbprint()}")
    return out


def disable_client(session: Session, client_id: str) -> None:
    """Returns nothing; the client can no longer obtain tokens (tokens already issued expire on their own)."""
    client = _existing(session, client_id)
    client.active = False
    session.add(client)
    session.flush()


def rotate_key(session: Session, client_id: str, *, private_key_out: Path, retire_old: bool = False) -> str:
    """Returns the kid of a new key pair for the client (same algorithm as its newest key); older keys
    stay valid so the client can switch over, unless `retire_old` removes them now."""
    client = _existing(session, client_id)
    _refuse_existing(private_key_out)
    current: list[dict[str, Any]] = list(client.jwks.get("keys", []))
    alg = str(current[0].get("alg", "ES384")) if current else "ES384"
    private = _generate_key(alg if alg in _GENERATED_ALGS else "ES384")
    new_public = private.as_dict(private=False)
    # Newest first; reassign the column (in-place JSON mutation is not persisted).
    client.jwks = {"keys": [new_public] if retire_old else [new_public, *current]}
    session.add(client)
    session.flush()
    _write_private_jwk(private_key_out, private)
    return str(new_public["kid"])


def get_active_client(session: Session, client_id: str) -> Client | None:
    """Returns the client when it exists and is active, else None."""
    client = session.get(Client, client_id)
    return client if client is not None and client.active else None


def _existing(session: Session, client_id: str) -> Client:
    client = session.get(Client, client_id)
    if client is None:
        raise ValueError(f"client {client_id!r} is not registered")
    return client


def _checked_scopes(role: Role, scopes: Collection[str] | None, ig_reads_clinical: bool) -> set[str]:
    if scopes is None:
        return set(ROLE_SCOPES[role])
    if isinstance(scopes, str):
        scopes = scopes.split()
    requested = set(scopes)
    if not requested:
        raise ValueError("a client needs at least one scope")
    outside = requested - within_ceiling(role, requested, ig_reads_clinical=ig_reads_clinical)
    if outside:
        raise ValueError(f"scopes outside the {role} ceiling: {', '.join(sorted(outside))}")
    return requested


def _checked_public_keys(jwks: dict[str, Any]) -> list[dict[str, Any]]:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError("public_jwks must be a JWK Set with a non-empty 'keys' list (RFC 7517 §5)")
    checked: list[dict[str, Any]] = []
    kids: set[str] = set()
    for data in keys:
        if not isinstance(data, dict):
            raise ValueError("every entry of 'keys' must be a JWK object")
        if _PRIVATE_MEMBERS & data.keys():
            raise ValueError("public_jwks holds private key material: register the public key only")
        kid, alg = data.get("kid"), data.get("alg")
        if not isinstance(kid, str) or not kid or kid in kids:
            raise ValueError("every key needs a unique, non-empty 'kid'")
        if alg not in CLIENT_KEY_ALGS:
            raise ValueError(f"every key needs 'alg' set to one of {', '.join(CLIENT_KEY_ALGS)}")
        if data.get("use", "sig") != "sig":
            raise ValueError("client keys are signing keys ('use' must be 'sig')")
        try:
            key = import_key(data)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"key {kid!r} is not a valid JWK") from exc
        _check_key_fits_alg(key, alg)
        kids.add(kid)
        checked.append(key.as_dict(private=False))
    return checked


def _check_key_fits_alg(key: Key, alg: str) -> None:
    if alg.startswith("ES"):
        if not isinstance(key, ECKey) or key.curve_name != "P-384":
            raise ValueError(f"{alg} needs an EC P-384 key")
    elif not isinstance(key, RSAKey) or key.raw_value.key_size < _RSA_MIN_BITS:
        raise ValueError(f"{alg} needs an RSA key of at least {_RSA_MIN_BITS} bits")


def _generate_key(alg: str) -> Key:
    if alg not in _GENERATED_ALGS:
        raise ValueError(f"the gateway generates {' or '.join(_GENERATED_ALGS)} keys, not {alg!r}")
    params = {"alg": alg, "use": "sig"}
    key: Key
    if alg == "ES384":
        key = ECKey.generate_key("P-384", parameters=params, private=True)
    else:
        key = RSAKey.generate_key(_RSA_GENERATED_BITS, parameters=params, private=True)
    key.ensure_kid()  # kid = the RFC 7638 thumbprint: unique per key, derivable from the public key
    return key


def _refuse_existing(path: Path) -> None:
    if path.exists():
        raise ValueError(f"{path} already exists: refusing to overwrite a private key")


def _write_private_jwk(path: Path, key: Key) -> None:
    """Creates the file with O_EXCL and mode 0600 in one step, so it is never readable by others
    and an existing key is never overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ValueError(f"{path} already exists: refusing to overwrite a private key") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # the umask may have narrowed it; never widened
        json.dump(key.as_dict(private=True), handle)
