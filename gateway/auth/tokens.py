"""Access tokens: JWTs signed by the gateway (RFC 9068 `at+jwt`), short-lived, carrying the client,
its organisation, its role and the granted scopes. Verification refuses anything not signed by a
key in our ring with our algorithm (so `alg: none` and forged tokens fail)."""

from __future__ import annotations

import secrets
import time

from joserfc import jwt
from joserfc.errors import JoseError

from gateway.auth.keys import TOKEN_ALG, TokenKeys
from gateway.auth.principal import Principal, Role
from profiles.outcomes import unauthorized

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 (a JWT type, RFC 9068 §2.1)


def issue_access_token(keys: TokenKeys, principal: Principal, *, issuer: str, ttl: int) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": principal.client_id,
        "client_id": principal.client_id,
        "aud": issuer,
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(16),
        "scope": " ".join(sorted(principal.scopes)),
        "org": principal.organisation,
        "role": str(principal.role),
    }
    header = {"alg": TOKEN_ALG, "typ": ACCESS_TOKEN_TYP, "kid": keys.current.kid}
    return jwt.encode(header, claims, keys.current, algorithms=[TOKEN_ALG])


def verify_access_token(keys: TokenKeys, token: str, *, issuer: str) -> Principal:
    """Returns the Principal the token was issued to; raises 401 FhirError for anything else."""
    try:
        decoded = jwt.decode(token, keys.keyset, algorithms=[TOKEN_ALG])
    except (JoseError, ValueError, KeyError, TypeError):
        raise unauthorized("The access token is malformed or its signature is not the gateway's") from None
    if decoded.header.get("typ") != ACCESS_TOKEN_TYP:
        raise unauthorized("The bearer token is not an access token issued by this gateway")
    registry = jwt.JWTClaimsRegistry(
        leeway=5,
        exp={"essential": True},
        iss={"essential": True, "value": issuer},
        sub={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise unauthorized(f"The access token is not valid here ({exc.error})") from None
    claims = decoded.claims
    try:
        role = Role(claims["role"])
    except (KeyError, ValueError):
        raise unauthorized("The access token names no known role") from None
    return Principal(
        client_id=str(claims["sub"]),
        organisation=str(claims.get("org", "")),
        role=role,
        scopes=frozenset(str(claims.get("scope", "")).split()),
    )
