"""What a calling system does to get a gateway access token: sign a client assertion (RFC 7523 §2.2)
with its private key and exchange it at the token endpoint (OAuth 2.0 client credentials, RFC 6749 §4.4).

Used by the demo, the end-to-end tests and any Python integrator; nothing here is trusted by the server.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, RSAKey, import_key

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 §2.2
TOKEN_PATH = "/oauth2/token"  # noqa: S105 -- a URL path, not a secret
_DEFAULT_ALG = {"EC": "ES384", "RSA": "RS384"}


class TokenError(Exception):
    """The token endpoint refused the request: `error` is the RFC 6749 §5.2 code."""

    def __init__(self, error: str, description: str | None = None, status_code: int | None = None):
        self.error = error
        self.description = description
        self.status_code = status_code
        super().__init__(f"{error}: {description}" if description else error)


def make_client_assertion(*, client_id: str, private_jwk: dict[str, Any], token_url: str, lifetime: int = 240) -> str:
    """Returns a signed client assertion: iss = sub = client_id, aud = the token URL, a fresh jti, and
    exp `lifetime` seconds from now (RFC 7523 §3); the header names the key (kid) and its alg."""
    if lifetime <= 0:
        raise ValueError("lifetime must be positive")
    key = _private_key(private_jwk)
    alg = key.alg or _DEFAULT_ALG[key.key_type]
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    header = {"alg": alg, "typ": "JWT", "kid": key.kid}
    return jwt.encode(header, claims, key, algorithms=[alg])


def fetch_token(
    *,
    base_url: str,
    client_id: str,
    private_key_path: Path,
    scope: str | None = None,
    http: httpx.Client | None = None,
) -> str:
    """Returns an access token from `<base_url>/oauth2/token`; raises TokenError with the server's
    RFC 6749 §5.2 error and description when it refuses (transport errors propagate as httpx errors)."""
    token_url = base_url.rstrip("/") + TOKEN_PATH
    private_jwk = json.loads(Path(private_key_path).read_text(encoding="utf-8"))
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": make_client_assertion(client_id=client_id, private_jwk=private_jwk, token_url=token_url),
    }
    if scope:
        form["scope"] = scope
    if http is None:
        with httpx.Client(timeout=10.0) as own:
            response = own.post(token_url, data=form, headers={"Accept": "application/json"})
    else:
        response = http.post(token_url, data=form, headers={"Accept": "application/json"})
    return _access_token(response)


def _private_key(private_jwk: dict[str, Any]) -> Key:
    try:
        key = import_key(private_jwk)
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValueError("the private key file does not hold a JWK") from exc
    if not isinstance(key, ECKey | RSAKey) or not key.is_private:
        raise ValueError("a client assertion needs a private EC or RSA JWK")
    if not key.kid:
        raise ValueError("the private JWK has no 'kid': the gateway finds the public key by kid")
    return key


def _access_token(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise TokenError("invalid_response", "the token endpoint did not answer with JSON", response.status_code)
    if response.status_code != 200:
        description = body.get("error_description")
        raise TokenError(
            str(body.get("error") or "invalid_response"),
            str(description) if description is not None else None,
            response.status_code,
        )
    token = body.get("access_token")
    if not isinstance(token, str) or str(body.get("token_type", "")).lower() != "bearer":
        raise TokenError("invalid_response", "the token response has no bearer access_token", response.status_code)
    return token
