"""Access tokens: JWTs signed by the gateway (RFC 9068 `at+jwt`), short-lived, carrying the client,
its organisation, its role and the granted scopes. Verification refuses anything not signed by a
key in our ring with our algorithm (so `alg: none` and forged tokens fail)."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict

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


class VerifiedTokens:
    """Tokens this process has already verified, until they expire (an ES384 check costs ~0.4 ms,
    and a client sends the same token for up to its five-minute life). Only fully verified tokens
    are kept, expiry is checked on every use, and whether the client is still active is not cached
    (gateway/deps.py asks the database on every request)."""

    def __init__(self, capacity: int = 10_000):
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], tuple[Principal, int, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, issuer: str, token: str, signing_kids: frozenset[str]) -> Principal | None:
        """Returns the token's Principal if it was verified before, has not expired, and the key that
        signed it is still in the ring (a key dropped by rotation invalidates its tokens at once)."""
        with self._lock:
            found = self._seen.get((issuer, token))
            if found is None:
                return None
            if found[1] <= time.time() or found[2] not in signing_kids:
                del self._seen[(issuer, token)]
                return None
            self._seen.move_to_end((issuer, token))
            return found[0]

    def put(self, issuer: str, token: str, principal: Principal, expires: int, kid: str) -> None:
        with self._lock:
            self._seen[(issuer, token)] = (principal, expires, kid)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)


def verify_access_token(keys: TokenKeys, token: str, *, issuer: str, cache: VerifiedTokens | None = None) -> Principal:
    """Returns the Principal the token was issued to; raises 401 FhirError for anything else."""
    kids = frozenset(str(k.kid) for k in keys.keyset.keys)
    if cache is not None and (known := cache.get(issuer, token, kids)) is not None:
        return known
    principal, expires, kid = _verify(keys, token, issuer=issuer)
    if cache is not None:
        cache.put(issuer, token, principal, expires, kid)
    return principal


def _verify(keys: TokenKeys, token: str, *, issuer: str) -> tuple[Principal, int, str]:
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
    principal = Principal(
        client_id=str(claims["sub"]),
        organisation=str(claims.get("org", "")),
        role=role,
        scopes=frozenset(str(claims.get("scope", "")).split()),
    )
    return principal, int(claims["exp"]), str(decoded.header.get("kid", ""))
