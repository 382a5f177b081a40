"""The OAuth 2.0 token endpoint: client credentials (RFC 6749 §4.4) with `private_key_jwt` client
authentication (RFC 7523 §2.2, §3), as the NHS API platform's signed-JWT pattern does it.

Built on Authlib's framework-neutral `AuthorizationServer`, with a small Starlette adapter:

    POST /oauth2/token  (application/x-www-form-urlencoded)
      └─ TokenEndpoint.handle        read and check the form (async), then in a worker thread:
           └─ _GatewayAuthorizationServer.create_token_response   (one per request)
                ├─ _ClientCredentialsGrant       the only grant; the only auth method is private_key_jwt
                ├─ PrivateKeyJwtAssertion        signature, iss = sub, aud, exp, jti (replay store: UsedJti)
                └─ granted_scopes                requested ∩ registered ∩ role ceiling
           └─ issue_access_token                 a short-lived RFC 9068 JWT signed by the gateway

Transactions: `handle(request)` opens and commits its own transaction. `handle(request, session=s)`
uses the caller's session and never commits: the jti row is written inside a SAVEPOINT (so a replay
leaves the outer transaction usable), and the caller writes its AuditEvent into `s` and commits once,
whether the request succeeded or failed, so the jti row and the audit row land together or not at all.

Errors are RFC 6749 §5.2 JSON. `invalid_client` is answered with 401 (RFC 6749 §5.2 allows it at any
time and the NHS API platform does so); when the client tried HTTP authentication (an Authorization
header) the 401 carries the matching WWW-Authenticate challenge, as §5.2 requires. Nothing here logs
an assertion, a key or a token. AUTHLIB_INSECURE_TRANSPORT is for the application to set (tests and
the loopback demo only); without it a plain-http token URL is refused.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InsecureTransportError,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    UnsupportedGrantTypeError,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, import_key
from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from gateway.auth.client_side import TOKEN_PATH
from gateway.auth.clients import CLIENT_KEY_ALGS, get_active_client
from gateway.auth.keys import TokenKeys
from gateway.auth.principal import Principal, Role, parse_scope, scope_allows, within_ceiling
from gateway.auth.tokens import issue_access_token
from gateway.db import transaction
from gateway.http import served_base_url
from gateway.models import Client, UsedJti
from gateway.settings import Settings

PRIVATE_KEY_JWT = "private_key_jwt"  # RFC 8414 / RFC 7591 name of the method
GRANT_TYPE = "client_credentials"
# Accepted assertion algorithms = the algorithms a registered key may carry (ES384, RS384, and RS512
# as the NHS platform's guide uses). RS256/ES256 are refused: every key is registered with its alg
# (RFC 7517 §4.4) and the header alg must equal it, so one key never verifies two algorithms.
ASSERTION_ALGS: tuple[str, ...] = CLIENT_KEY_ALGS
CLOCK_LEEWAY = 30  # seconds of clock skew tolerated on exp, nbf and iat
MAX_FORM_BYTES = 16 * 1024  # a token request is a few hundred bytes; RSA-4096 assertions ~1 KiB
MAX_FORM_FIELDS = 16
MAX_JTI_LENGTH = 200  # UsedJti.jti
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 §3.3 scope-token
_AUTH_SCHEME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 §11.1 auth-scheme (a token)
# One answer for "no such (active) client" and "an assertion its keys do not verify": a different text
# for each would let anyone enumerate client ids (RFC 6749 §10.x's advice against oracles). The precise
# reason is kept for the audit record (IG officers see it; the caller does not).
NOT_AUTHENTICATED = "Client authentication failed: the client is unknown or its assertion does not verify."


@dataclass(frozen=True)
class TokenResult:
    """What happened, for the caller's AuditEvent. client_id/organisation/role are set only once the
    client proved its identity (signature verified); `claimed_client_id` is the unverified `sub`."""

    ok: bool
    client_id: str | None
    organisation: str | None
    role: str | None
    error: str | None
    claimed_client_id: str | None = None
    reason: str | None = None  # why it was refused, in our own fixed words (for the audit record)


def base_url_for(request: Request, settings: Settings) -> str:
    """Returns the gateway's external base URL: settings.public_base_url, else the address this server
    is bound to (never the Host header). It is the access-token issuer; verify tokens with the same value."""
    base = settings.public_base_url or served_base_url(request.scope)
    return base.rstrip("/")


def token_url_for(base_url: str) -> str:
    """Returns the token endpoint URL, the only audience a client assertion may name (RFC 7523 §3 item 3)."""
    return base_url.rstrip("/") + TOKEN_PATH


def granted_scopes(
    *, role: Role, registered: Collection[str], requested: str | None, ig_reads_clinical: bool = False
) -> frozenset[str]:
    """Returns the scopes to grant: all registered scopes within the role's ceiling when none are asked
    for, else the permitted part of each requested one (RFC 6749 §3.3 lets the server grant less than
    asked, and the token response's `scope` then says what was granted). SMART v1 `read`/`write`/`*`
    are granted as their v2 letters. Raises InvalidScopeError (RFC 6749 §5.2) when the parameter is
    malformed or nothing permitted remains."""
    allowed = frozenset(registered)
    if not requested or not requested.strip():
        granted = frozenset(within_ceiling(role, set(allowed), ig_reads_clinical=ig_reads_clinical))
        if not granted:
            raise InvalidScopeError(description="The client has no scopes that its role allows.")
        return granted
    tokens = requested.split()
    if not all(_SCOPE_TOKEN.fullmatch(token) for token in tokens):
        raise InvalidScopeError(description="The scope parameter is malformed (RFC 6749 section 3.3).")
    granted = frozenset(
        scope for token in tokens if (scope := _permitted_part(token, role, allowed, ig_reads_clinical)) is not None
    )
    if not granted:
        shown = " ".join(sorted(set(tokens))[:5])[:300]
        raise InvalidScopeError(description=f"None of the requested scopes is available to this client: {shown}")
    return granted


def _permitted_part(scope: str, role: Role, registered: frozenset[str], ig_reads_clinical: bool) -> str | None:
    """Returns the v2 scope for the permissions of `scope` that both the registration and the role's
    ceiling cover (`system/Task.rsud` for a VCSE host gives `system/Task.rsu`), None when there are none."""
    parsed = parse_scope(_as_v2(scope))
    if parsed is None or parsed[0] == "*":
        return None
    resource, permissions = parsed
    letters = "".join(
        p
        for p in "cruds"
        if p in permissions
        and scope_allows(registered, resource, p)
        and within_ceiling(role, {f"system/{resource}.{p}"}, ig_reads_clinical=ig_reads_clinical)
    )
    return f"system/{resource}.{letters}" if letters else None


def _as_v2(scope: str) -> str:
    """SMART v1 `system/X.read` and `system/X.write` in their v2 spelling (SMART App Launch 2.0 §scopes:
    read = rs, write = cud); anything else unchanged."""
    head, dot, perms = scope.rpartition(".")
    return f"{head}.{_V1_PERMISSIONS[perms]}" if dot and perms in _V1_PERMISSIONS else scope


_V1_PERMISSIONS = {"read": "rs", "write": "cud"}


class TokenEndpoint:
    """POST /oauth2/token. The route stays thin: `response, result = await endpoint.handle(request)`."""

    def __init__(self, engine: Engine, settings: Settings, keys: TokenKeys):
        self.engine = engine
        self.settings = settings
        self.keys = keys

    async def handle(self, request: Request, session: Session | None = None) -> tuple[Response, TokenResult]:
        """Returns the RFC 6749 §5.1 / §5.2 response and what happened. With `session`, the jti row is
        added to it and the caller commits (together with its audit row); without, it commits itself."""
        base = base_url_for(request, self.settings)
        try:
            form = await _read_form(request)
        except OAuth2Error as error:
            return _render(_error_triple(error)), TokenResult(
                ok=False, client_id=None, organisation=None, role=None, error=str(error.error)
            )
        return await run_in_threadpool(self._exchange, form, dict(request.headers), base, session)

    def _exchange(
        self, form: _Form, headers: dict[str, str], base: str, session: Session | None
    ) -> tuple[Response, TokenResult]:
        if session is not None:
            return self._run(form, headers, base, session)
        with transaction(self.engine) as own:
            return self._run(form, headers, base, own)

    def _run(self, form: _Form, headers: dict[str, str], base: str, session: Session) -> tuple[Response, TokenResult]:
        exchange = _Exchange(session=session, base_url=base, token_url=token_url_for(base))
        try:
            oauth_request = _FormRequest(exchange.token_url, headers, form)
        except InsecureTransportError:
            error = InvalidRequestError(description="The token endpoint requires https.")
            return _render(_error_triple(error)), exchange.result(error.error)
        server = _GatewayAuthorizationServer(exchange, self.settings, self.keys)
        status, body, response_headers = server.create_token_response(oauth_request)
        error = None if status == 200 else str(body.get("error"))
        if exchange.reason is None and error is not None:
            exchange.reason = body.get("error_description")
        return _render((status, body, response_headers)), exchange.result(error)


@dataclass
class _Form:
    data: dict[str, str]
    datalist: dict[str, list[str]]


async def _read_form(request: Request) -> _Form:
    """Returns the parsed form; raises invalid_request / invalid_client for anything else (RFC 6749 §3.2)."""
    if request.method != "POST":
        raise InvalidRequestError(description="The token endpoint accepts POST only.")
    authorization = request.headers.get("authorization")
    if authorization is not None:
        raise _HttpAuthRefused(authorization)
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != FORM_CONTENT_TYPE:
        raise InvalidRequestError(description=f"The request body must be {FORM_CONTENT_TYPE}.")
    body = await _read_body(request)
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError(description="The request body is not a valid form.") from None
    datalist: dict[str, list[str]] = {}
    for name, value in pairs:
        datalist.setdefault(name, []).append(value)
    if any(len(values) > 1 for values in datalist.values()):
        # RFC 6749 §3.2: request parameters MUST NOT be included more than once.
        raise InvalidRequestError(description="A request parameter is repeated.")
    data = {name: values[0] for name, values in datalist.items() if values[0] != ""}
    if "grant_type" not in data:
        raise InvalidRequestError(description="Missing grant_type (RFC 6749 section 4.4.2).")
    return _Form(data=data, datalist=datalist)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        raise InvalidRequestError(description="The request body is too large for a token request.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_FORM_BYTES:
                raise InvalidRequestError(description="The request body is too large for a token request.")
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidRequestError(description="The client disconnected.") from None
    return b"".join(chunks)


class _HttpAuthRefused(InvalidClientError):
    """RFC 6749 §5.2: a client that tried HTTP authentication gets 401 with a challenge for the scheme
    it used. We offer no HTTP scheme (no shared secrets), only private_key_jwt in the form."""

    def __init__(self, authorization: str):
        super().__init__(
            status_code=401,
            description="This endpoint accepts only private_key_jwt client assertions, not an Authorization header.",
        )
        scheme = authorization.strip().split(" ", 1)[0]
        self.challenge = f'{scheme} realm="sp-gateway"' if _AUTH_SCHEME.fullmatch(scheme) else None


def _error_triple(error: OAuth2Error) -> tuple[int, dict[str, str], list[tuple[str, str]]]:
    """Returns (status, body, headers) for an RFC 6749 §5.2 error, with our static descriptions only."""
    body = {"error": str(error.error)}
    if error.description:
        body["error_description"] = str(error.description)
    status = int(error.status_code or 400)
    headers: list[tuple[str, str]] = []
    if isinstance(error, InvalidClientError):
        status = 401
        if isinstance(error, _HttpAuthRefused) and error.challenge:
            headers.append(("WWW-Authenticate", error.challenge))
    return status, body, headers


def _render(triple: tuple[int, dict[str, Any], list[tuple[str, str]]]) -> Response:
    status, body, headers = triple
    extra = {name: value for name, value in headers if name.lower() not in ("content-type", "cache-control", "pragma")}
    return JSONResponse(body, status_code=status, headers={**extra, **_NO_STORE})


@dataclass
class _Exchange:
    """The state of one token request, shared by the server, the grant and the assertion check."""

    session: Session
    base_url: str
    token_url: str
    claimed_client_id: str | None = None
    client: Client | None = None  # looked up by the assertion's sub (active clients only)
    authenticated: Client | None = None  # set once the assertion has been fully verified
    granted: frozenset[str] = field(default_factory=frozenset)
    reason: str | None = None  # the precise refusal, for the audit only

    def result(self, error: str | None) -> TokenResult:
        who = self.authenticated
        return TokenResult(
            ok=error is None,
            client_id=who.client_id if who else None,
            organisation=who.organisation_id if who else None,
            role=who.role if who else None,
            error=error,
            claimed_client_id=self.claimed_client_id,
            reason=self.reason,
        )


class _FormPayload(OAuth2Payload):
    def __init__(self, form: _Form):
        self._form = form

    @property
    def data(self) -> dict[str, str]:
        return self._form.data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._form.datalist


class _FormRequest(OAuth2Request):
    """Authlib's view of a Starlette request whose form has already been read. The URI is the external
    token URL, so a TLS-terminating proxy with public_base_url=https://... passes the https check."""

    def __init__(self, uri: str, headers: dict[str, str], form: _Form):
        super().__init__(method="POST", uri=uri, headers=headers)
        self.payload = _FormPayload(form)
        self._form = form

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form.data


class _RegisteredClient(ClientMixin):
    """A Client row as Authlib sees it: token endpoint only, client credentials only, private_key_jwt only."""

    def __init__(self, row: Client, role: Role):
        self.row = row
        self.role = role

    def get_client_id(self) -> str:
        return self.row.client_id

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == PRIVATE_KEY_JWT and endpoint == "token"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE


class PrivateKeyJwtAssertion(JWTBearerClientAssertion):
    """RFC 7523 §3 checks on the client assertion, against the client's registered JWKS.

    Authlib's flow: extract (unverified) → look up the client by `sub` → resolve its key by `kid` →
    verify the signature with an explicit algorithm list → verify the claims → record the jti.
    Every failure is invalid_client with a fixed description (nothing from the assertion is echoed).
    """

    CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT

    def __init__(self, exchange: _Exchange, *, max_lifetime: int, leeway: int = CLOCK_LEEWAY):
        super().__init__(validate_jti=True, leeway=leeway)
        self.exchange = exchange
        self.max_lifetime = max_lifetime
        self._header: dict[str, Any] = {}
        self._identifying = False  # between reading `sub` and a verified signature

    def __call__(self, query_client: Any, request: OAuth2Request) -> Any:
        try:
            return super().__call__(query_client, request)
        except InvalidClientError as error:
            if not self._identifying:
                raise
            # Unknown client, unknown kid, wrong alg or a bad signature: one answer (no enumeration).
            self.exchange.reason = str(error.description or "")
            raise InvalidClientError(description=NOT_AUTHENTICATED) from None

    def get_audiences(self) -> list[str]:
        return [self.exchange.token_url]

    def extract_assertion(self, assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
        try:
            headers, claims = super().extract_assertion(assertion)
        except InvalidClientError:
            raise
        except (JoseError, ValueError, TypeError, KeyError, AttributeError):
            raise InvalidClientError(description="The client assertion is not a JWT.") from None
        if not isinstance(headers, dict):
            raise InvalidClientError(description="The client assertion is not a JWT.")
        if headers.get("alg") not in ASSERTION_ALGS:
            raise InvalidClientError(
                description=f"The client assertion must be signed with one of {', '.join(ASSERTION_ALGS)}."
            )
        if not isinstance(headers.get("kid"), str) or not headers["kid"]:
            raise InvalidClientError(description="The client assertion header must name its key (kid).")
        sub = claims.get("sub")
        if isinstance(sub, str) and len(sub) <= 100:
            self.exchange.claimed_client_id = sub
        self._header = headers
        self._identifying = True
        return headers, claims

    def resolve_client_public_key(self, client: _RegisteredClient) -> Key:
        """Returns the registered public key named by the header's kid (RFC 7515 §4.1.4)."""
        kid, alg = self._header["kid"], self._header["alg"]
        keys = client.row.jwks.get("keys") if isinstance(client.row.jwks, dict) else None
        for data in keys if isinstance(keys, list) else []:
            if isinstance(data, dict) and data.get("kid") == kid:
                if data.get("alg", alg) != alg or data.get("use", "sig") != "sig":
                    raise InvalidClientError(description="The key named by kid is not registered for this alg.")
                try:
                    return import_key(data)
                except (JoseError, ValueError, TypeError, KeyError):
                    raise InvalidClientError(description="The client's registered key cannot be used.") from None
        raise InvalidClientError(description="No registered key of this client has that kid.")

    def process_assertion_claims(self, assertion: str, resolve_key: Key) -> dict[str, Any]:
        try:
            # The algorithm list is explicit: ES384/RS384/RS512 are not in joserfc's default set,
            # and `none`, HS* and anything else stay refused whatever the header says.
            token = jwt.decode(assertion, resolve_key, algorithms=[self._header["alg"]])
        except (JoseError, ValueError, TypeError, KeyError, OverflowError):
            raise InvalidClientError(description="The client assertion signature does not verify.") from None
        self._identifying = False  # the caller holds the client's key: precise answers from here on
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: dict[str, Any]) -> None:
        """RFC 7523 §3: iss = sub = client_id, aud = our token URL, exp (no more than max_lifetime ahead),
        optional nbf/iat not in the future, and a jti not seen before."""
        now = time.time()
        client = self.exchange.client
        iss, sub = claims.get("iss"), claims.get("sub")
        if client is None or not isinstance(iss, str) or iss != sub or sub != client.client_id:
            raise InvalidClientError(description="iss and sub must both be the client_id.")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.exchange.token_url not in [a for a in audiences if isinstance(a, str)]:
            raise InvalidClientError(description="aud must be this gateway's token endpoint URL.")
        exp = _numeric_date(claims, "exp")
        if exp is None:
            raise InvalidClientError(description="The client assertion has no exp.")
        if exp < now - self.leeway:
            raise InvalidClientError(description="The client assertion has expired.")
        if exp > now + self.max_lifetime + self.leeway:
            raise InvalidClientError(
                description=f"The client assertion exp must be at most {self.max_lifetime} seconds ahead."
            )
        for name in ("nbf", "iat"):
            value = _numeric_date(claims, name)
            if value is not None and value > now + self.leeway:
                raise InvalidClientError(description=f"The client assertion {name} is in the future.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise InvalidClientError(description=f"jti is required, a string of at most {MAX_JTI_LENGTH} characters.")
        if not self.validate_jti(claims, jti):
            raise InvalidClientError(description="This client assertion has been used before (jti).")

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """Returns False when this client has already used this jti (RFC 7523 §3 item 7). The row lives
        until the assertion could no longer be accepted; a unique constraint makes racing workers safe."""
        session = self.exchange.session
        client_id = str(claims["sub"])
        now = datetime.now(UTC)
        expires_at = datetime.fromtimestamp(float(claims["exp"]) + self.leeway, UTC)
        try:
            with session.begin_nested():
                # Opportunistic purge of this client's expired rows (uses the (client_id, jti) index).
                session.execute(delete(UsedJti).where(UsedJti.client_id == client_id, UsedJti.expires_at < now))
                session.add(UsedJti(client_id=client_id, jti=jti, expires_at=expires_at))
                session.flush()
        except IntegrityError:
            return False
        return True


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    """Returns the NumericDate claim (RFC 7519 §2), None when absent; refuses booleans, NaN, infinities."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidClientError(description=f"The client assertion {name} is not a NumericDate.")
    if isinstance(value, int):
        if abs(value) > 10**12:
            raise InvalidClientError(description=f"The client assertion {name} is out of range.")
        return float(value)
    if not math.isfinite(value):
        raise InvalidClientError(description=f"The client assertion {name} is not a NumericDate.")
    return value


class _ClientCredentialsGrant(ClientCredentialsGrant):
    """RFC 6749 §4.4 with private_key_jwt as the only client authentication method."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = [PRIVATE_KEY_JWT]

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        form_client_id = self.request.payload.client_id
        if form_client_id is not None and form_client_id != client.get_client_id():
            # RFC 7521 §4.2: a client_id parameter, if present, MUST identify the authenticated client.
            raise InvalidClientError(description="client_id does not match the client assertion.")
        self.request.client = client
        exchange: _Exchange = self.server.exchange
        exchange.granted = granted_scopes(
            role=client.role,
            registered=client.row.scopes.split(),
            requested=self.request.payload.scope,
            ig_reads_clinical=self.server.settings.ig_reads_clinical,
        )

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(scope=" ".join(sorted(self.server.exchange.granted)), include_refresh_token=False)
        self.save_token(token)
        return 200, token, [("Content-Type", "application/json"), *_NO_STORE.items()]


class _GatewayAuthorizationServer(AuthorizationServer):
    """One per request: it carries that request's session, URLs and outcome."""

    def __init__(self, exchange: _Exchange, settings: Settings, keys: TokenKeys):
        super().__init__(scopes_supported=None)
        self.exchange = exchange
        self.settings = settings
        self.keys = keys
        self.register_grant(_ClientCredentialsGrant)
        self.register_client_auth_method(
            PRIVATE_KEY_JWT, PrivateKeyJwtAssertion(exchange, max_lifetime=settings.assertion_max_lifetime)
        )
        self.register_token_generator("default", self._generate_token)

    def query_client(self, client_id: str) -> _RegisteredClient | None:
        if len(client_id) > 100:
            return None
        row = get_active_client(self.exchange.session, client_id)  # a disabled client is no client
        if row is None:
            return None
        try:
            role = Role(row.role)
        except ValueError:
            return None
        self.exchange.client = row
        return _RegisteredClient(row, role)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        if name == "after_authenticate_client":
            self.exchange.authenticated = kwargs["client"].row

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Access tokens are self-contained signed JWTs (RFC 9068): there is nothing to store. The
        issue is audited by the caller from the TokenResult."""

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        return status, body, headers

    def handle_error_response(
        self, request: OAuth2Request, error: OAuth2Error
    ) -> tuple[int, dict[str, str], list[tuple[str, str]]]:
        if isinstance(error, UnsupportedGrantTypeError):
            error.description = f"Only grant_type={GRANT_TYPE} is supported."
        return _error_triple(error)

    def _generate_token(
        self,
        grant_type: str,
        client: _RegisteredClient,
        user: object = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        principal = Principal(
            client_id=client.row.client_id,
            organisation=client.row.organisation_id,
            role=client.role,
            scopes=self.exchange.granted,
        )
        ttl = self.settings.access_token_ttl
        access_token = issue_access_token(self.keys, principal, issuer=self.exchange.base_url, ttl=ttl)
        # RFC 6749 §5.1; no refresh token for client credentials (§4.4.3).
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": ttl, "scope": scope or ""}
