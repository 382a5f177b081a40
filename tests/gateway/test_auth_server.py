"""The token endpoint: client credentials with a private_key_jwt client assertion (RFC 6749 §4.4, RFC 7523).

Each rejection test proves one rule, with the RFC 6749 §5.2 error code and a 4xx status (never a 500).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey, import_key
from sqlalchemy import Engine, func
from sqlmodel import Session, SQLModel, select
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth.client_side import CLIENT_ASSERTION_TYPE, TokenError, fetch_token, make_client_assertion
from gateway.auth.clients import add_client, disable_client
from gateway.auth.keys import TokenKeys
from gateway.auth.principal import ROLE_SCOPES, Role
from gateway.auth.server import TokenEndpoint, TokenResult, granted_scopes
from gateway.auth.tokens import verify_access_token
from gateway.db import make_engine, transaction
from gateway.models import Organisation, UsedJti
from gateway.settings import Settings
from profiles.outcomes import FhirError

pytestmark = pytest.mark.anyio

BASE = "http://testserver"
TOKEN_URL = f"{BASE}/oauth2/token"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Registered:
    client_id: str
    key_path: Path

    @property
    def private_jwk(self) -> dict[str, Any]:
        return json.loads(self.key_path.read_text())


@dataclass
class Gateway:
    app: FastAPI
    engine: Engine
    settings: Settings
    keys: TokenKeys
    results: list[TokenResult]
    gp: Registered
    vcse: Registered


def _organisations(session: Session) -> None:
    for org_id, kind in (("A81001", "gp-practice"), ("8VC01", "vcse")):
        session.add(
            Organisation(
                id=org_id,
                name=f"Test {org_id}",
                kind=kind,
                identifier_system="https://fhir.nhs.uk/Id/ods-organization-code",
            )
        )


def _register(session: Session, tmp: Path, client_id: str, org: str, role: Role, **kw: Any) -> Registered:
    path = tmp / "client-keys" / f"{client_id}.jwk.json"
    add_client(session, client_id=client_id, organisation_id=org, role=role, private_key_out=path, **kw)
    return Registered(client_id, path)


def token_app(endpoint: TokenEndpoint, results: list[TokenResult]) -> FastAPI:
    app = FastAPI()

    @app.post("/oauth2/token")
    async def token(request: Request) -> Response:
        response, result = await endpoint.handle(request)
        results.append(result)
        return response

    return app


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # http://testserver in tests only
    settings = Settings(data_dir=tmp_path / "data")
    engine = make_engine(settings)
    SQLModel.metadata.create_all(engine)
    with transaction(engine) as session:
        _organisations(session)
        gp = _register(session, tmp_path, "gp-client", "A81001", Role.REFERRER)
        vcse = _register(session, tmp_path, "vcse-client", "8VC01", Role.VCSE)
    keys = TokenKeys(settings.keys_dir)
    results: list[TokenResult] = []
    app = token_app(TokenEndpoint(engine, settings, keys), results)
    yield Gateway(app, engine, settings, keys, results, gp, vcse)
    engine.dispose()


@pytest.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway.app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def claims_for(client_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "iat": now,
        "exp": now + 240,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def sign(claims: dict[str, Any], private_jwk: dict[str, Any], **header: Any) -> str:
    key = import_key(private_jwk)
    alg = header.pop("alg", private_jwk.get("alg", "ES384"))
    full = {"alg": alg, "typ": "JWT", "kid": private_jwk.get("kid"), **header}
    return jwt.encode({k: v for k, v in full.items() if v is not None}, claims, key, algorithms=[alg])


def token_form(assertion: str | None, **extra: str) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE}
    if assertion is not None:
        form["client_assertion"] = assertion
    form.update(extra)
    return form


async def post_token(http: httpx.AsyncClient, form: dict[str, str], **kw: Any) -> httpx.Response:
    return await http.post("/oauth2/token", data=form, **kw)


def assert_oauth_error(response: httpx.Response, error: str) -> None:
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert body["error"] == error, body
    assert response.headers["cache-control"] == "no-store"
    if error == "invalid_client":
        assert response.status_code == 401
    else:
        assert response.status_code == 400


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


# --- success ---------------------------------------------------------------------------------


async def test_signed_assertion_gets_a_token_carrying_organisation_role_and_scopes(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    assertion = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    response = await post_token(http, token_form(assertion))

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == gateway.settings.access_token_ttl
    assert set(body["scope"].split()) == set(ROLE_SCOPES[Role.REFERRER])
    principal = verify_access_token(gateway.keys, body["access_token"], issuer=BASE)
    assert principal.client_id == "gp-client"
    assert principal.organisation == "A81001"
    assert principal.role is Role.REFERRER
    assert principal.scopes == frozenset(ROLE_SCOPES[Role.REFERRER])
    assert gateway.results == [
        TokenResult(
            ok=True,
            client_id="gp-client",
            organisation="A81001",
            role="referrer",
            error=None,
            claimed_client_id="gp-client",
        )
    ]


async def test_a_narrower_requested_scope_is_all_the_token_carries(gateway: Gateway, http: httpx.AsyncClient) -> None:
    assertion = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    response = await post_token(http, token_form(assertion, scope="system/Task.r system/ServiceRequest.c"))

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/ServiceRequest.c system/Task.r"
    principal = verify_access_token(gateway.keys, response.json()["access_token"], issuer=BASE)
    assert principal.scopes == {"system/Task.r", "system/ServiceRequest.c"}


async def test_the_issuer_and_audience_follow_public_base_url(gateway: Gateway, http: httpx.AsyncClient) -> None:
    gateway.settings.public_base_url = "https://gateway.example.nhs.uk/"
    public_token_url = "https://gateway.example.nhs.uk/oauth2/token"
    local = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    public = sign(claims_for("gp-client", aud=public_token_url), gateway.gp.private_jwk)

    assert_oauth_error(await post_token(http, token_form(local)), "invalid_client")
    response = await post_token(http, token_form(public))
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert verify_access_token(gateway.keys, token, issuer="https://gateway.example.nhs.uk").client_id == "gp-client"


async def test_an_rs384_client_key_works(gateway: Gateway, http: httpx.AsyncClient, tmp_path: Path) -> None:
    with transaction(gateway.engine) as session:
        rsa = _register(session, tmp_path, "rsa-client", "A81001", Role.REFERRER, alg="RS384")
    assert rsa.private_jwk["alg"] == "RS384"
    response = await post_token(http, token_form(sign(claims_for("rsa-client"), rsa.private_jwk)))
    assert response.status_code == 200, response.text


async def test_client_id_in_the_form_may_repeat_the_assertions_subject(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    assertion = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    response = await post_token(http, token_form(assertion, client_id="gp-client"))
    assert response.status_code == 200, response.text


# --- rejections ------------------------------------------------------------------------------


async def test_no_assertion_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    response = await post_token(http, token_form(None))
    assert_oauth_error(response, "invalid_client")
    assert gateway.results[-1].ok is False
    assert gateway.results[-1].client_id is None


async def test_a_wrong_assertion_type_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    assertion = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    form = token_form(assertion, client_assertion_type="urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
    assert_oauth_error(await post_token(http, form), "invalid_client")


@pytest.mark.parametrize(
    "garbage",
    [
        "not-a-jwt",
        "a.b.c",
        "e30.e30.",  # {} . {} : no alg
        "W10.W10.",  # [] . []
        "eyJhbGciOiJFUzM4NCJ9.W10.",  # payload is a JSON array
        "eyJhbGciOiJFUzM4NCJ9.bm90IGpzb24.",  # payload is not JSON
        "....",
        "é.é.é",
        "x" * 5000,
    ],
)
async def test_a_malformed_assertion_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient, garbage: str) -> None:
    assert_oauth_error(await post_token(http, token_form(garbage)), "invalid_client")


async def test_a_wrong_signature_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    impostor = ECKey.generate_key("P-384", private=True).as_dict(private=True)
    impostor.update(alg="ES384", kid=gateway.gp.private_jwk["kid"])  # claims the real key's kid
    assert_oauth_error(await post_token(http, token_form(sign(claims_for("gp-client"), impostor))), "invalid_client")


async def test_a_tampered_payload_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    header, _, signature = sign(claims_for("gp-client"), gateway.gp.private_jwk).split(".")
    forged = _b64(json.dumps(claims_for("gp-client", exp=int(time.time()) + 200)).encode())
    assert_oauth_error(await post_token(http, token_form(f"{header}.{forged}.{signature}")), "invalid_client")


async def test_another_clients_key_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    vcse_key = gateway.vcse.private_jwk
    # The VCSE client signs as the GP client with its own key: its kid is not registered for gp-client...
    own_kid = sign(claims_for("gp-client"), vcse_key)
    # ...and naming gp-client's kid does not make its key verify.
    borrowed_kid = sign(claims_for("gp-client"), vcse_key, kid=gateway.gp.private_jwk["kid"])
    for assertion in (own_kid, borrowed_kid):
        assert_oauth_error(await post_token(http, token_form(assertion)), "invalid_client")
    assert all(result.client_id is None for result in gateway.results)
    assert {result.claimed_client_id for result in gateway.results} == {"gp-client"}


async def test_alg_none_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    header = {"alg": "none", "kid": gateway.gp.private_jwk["kid"]}
    assert_oauth_error(await post_token(http, token_form(unsigned(header, claims_for("gp-client")))), "invalid_client")


async def test_hs256_with_the_public_key_as_secret_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    public = {k: v for k, v in gateway.gp.private_jwk.items() if k != "d"}
    secret = OctKey.import_key(json.dumps(public, sort_keys=True).encode())
    header = {"alg": "HS256", "kid": gateway.gp.private_jwk["kid"]}
    assertion = jwt.encode(header, claims_for("gp-client"), secret, algorithms=["HS256"])
    assert_oauth_error(await post_token(http, token_form(assertion)), "invalid_client")


async def test_es256_is_refused_even_with_a_valid_signature(gateway: Gateway, http: httpx.AsyncClient) -> None:
    p256 = ECKey.generate_key("P-256", private=True).as_dict(private=True)
    p256.update(alg="ES256", kid=gateway.gp.private_jwk["kid"])
    assert_oauth_error(await post_token(http, token_form(sign(claims_for("gp-client"), p256))), "invalid_client")


async def test_an_assertion_without_kid_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    jwk = dict(gateway.gp.private_jwk)
    del jwk["kid"]
    assert_oauth_error(await post_token(http, token_form(sign(claims_for("gp-client"), jwk))), "invalid_client")


async def test_an_expired_assertion_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    now = int(time.time())
    claims = claims_for("gp-client", iat=now - 400, exp=now - 120)
    assert_oauth_error(await post_token(http, token_form(sign(claims, gateway.gp.private_jwk))), "invalid_client")


async def test_an_exp_beyond_the_maximum_lifetime_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    claims = claims_for("gp-client", exp=int(time.time()) + gateway.settings.assertion_max_lifetime + 120)
    response = await post_token(http, token_form(sign(claims, gateway.gp.private_jwk)))
    assert_oauth_error(response, "invalid_client")
    assert "at most" in response.json()["error_description"]


@pytest.mark.parametrize("exp", [None, "soon", True, float("nan"), float("inf"), 10**30])
async def test_a_missing_or_non_numeric_exp_is_invalid_client(
    gateway: Gateway, http: httpx.AsyncClient, exp: object
) -> None:
    claims = claims_for("gp-client")
    del claims["exp"]
    if exp is not None:
        claims["exp"] = exp
    assert_oauth_error(await post_token(http, token_form(sign(claims, gateway.gp.private_jwk))), "invalid_client")


async def test_an_iat_in_the_future_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    claims = claims_for("gp-client", iat=int(time.time()) + 200)
    assert_oauth_error(await post_token(http, token_form(sign(claims, gateway.gp.private_jwk))), "invalid_client")


@pytest.mark.parametrize(
    "aud",
    ["http://elsewhere.example/oauth2/token", BASE, f"{TOKEN_URL}/", ["http://elsewhere.example/oauth2/token"], 7],
)
async def test_a_wrong_audience_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient, aud: object) -> None:
    claims = claims_for("gp-client", aud=aud)
    assert_oauth_error(await post_token(http, token_form(sign(claims, gateway.gp.private_jwk))), "invalid_client")


async def test_an_audience_list_naming_the_token_url_is_accepted(gateway: Gateway, http: httpx.AsyncClient) -> None:
    claims = claims_for("gp-client", aud=["http://elsewhere.example", TOKEN_URL])
    response = await post_token(http, token_form(sign(claims, gateway.gp.private_jwk)))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("iss", ["vcse-client", None, 42])
async def test_iss_other_than_sub_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient, iss: object) -> None:
    claims = claims_for("gp-client")
    claims.pop("iss")
    if iss is not None:
        claims["iss"] = iss
    assert_oauth_error(await post_token(http, token_form(sign(claims, gateway.gp.private_jwk))), "invalid_client")


@pytest.mark.parametrize("jti", [None, "", 12345, "j" * 201])
async def test_a_missing_or_unusable_jti_is_invalid_client(
    gateway: Gateway, http: httpx.AsyncClient, jti: object
) -> None:
    claims = claims_for("gp-client")
    del claims["jti"]
    if jti is not None:
        claims["jti"] = jti
    assert_oauth_error(await post_token(http, token_form(sign(claims, gateway.gp.private_jwk))), "invalid_client")


async def test_a_replayed_jti_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    assertion = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    assert (await post_token(http, token_form(assertion))).status_code == 200
    replay = await post_token(http, token_form(assertion))
    assert_oauth_error(replay, "invalid_client")
    assert "used before" in replay.json()["error_description"]


async def test_the_same_jti_from_another_client_is_not_a_replay(gateway: Gateway, http: httpx.AsyncClient) -> None:
    jti = str(uuid.uuid4())
    gp = sign(claims_for("gp-client", jti=jti), gateway.gp.private_jwk)
    vcse = sign(claims_for("vcse-client", jti=jti), gateway.vcse.private_jwk)
    assert (await post_token(http, token_form(gp))).status_code == 200
    assert (await post_token(http, token_form(vcse))).status_code == 200


async def test_expired_jti_rows_are_purged(gateway: Gateway, http: httpx.AsyncClient) -> None:
    with transaction(gateway.engine) as session:
        session.add(UsedJti(client_id="gp-client", jti="old", expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    assertion = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    assert (await post_token(http, token_form(assertion))).status_code == 200
    with Session(gateway.engine) as session:
        remaining = session.exec(select(UsedJti.jti).where(UsedJti.client_id == "gp-client")).all()
    assert len(remaining) == 1
    assert "old" not in remaining


@pytest.mark.parametrize("scope", ["system/ServiceRequest.c", "system/Task.d", "system/*.r", "patient/Task.r"])
async def test_a_scope_the_role_may_not_have_is_invalid_scope(
    gateway: Gateway, http: httpx.AsyncClient, scope: str
) -> None:
    assertion = sign(claims_for("vcse-client"), gateway.vcse.private_jwk)
    response = await post_token(http, token_form(assertion, scope=scope))
    assert_oauth_error(response, "invalid_scope")
    result = gateway.results[-1]
    assert (result.ok, result.client_id, result.role, result.error) == (False, "vcse-client", "vcse", "invalid_scope")


@pytest.mark.parametrize(
    ("asked", "granted"),
    [
        ("system/Task.r system/ServiceRequest.c", "system/Task.r"),
        ("system/Task.rsud system/*.r patient/Task.r", "system/Task.rus"),  # v2 letters in c-r-u-d-s order
        ("system/Task.read system/Observation.write system/AuditEvent.rs", "system/Observation.c system/Task.rs"),
    ],
)
async def test_a_scope_set_partly_beyond_the_ceiling_is_granted_the_permitted_subset(
    gateway: Gateway, http: httpx.AsyncClient, asked: str, granted: str
) -> None:
    # Issue 12 item 13 (RFC 6749 §3.3, SMART): grant what is permitted and say so in `scope`;
    # SMART v1 read/write are read as their v2 letters.
    assertion = sign(claims_for("vcse-client"), gateway.vcse.private_jwk)
    response = await post_token(http, token_form(assertion, scope=asked))

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == granted
    principal = verify_access_token(gateway.keys, response.json()["access_token"], issuer=BASE)
    assert principal.scopes == set(granted.split())


async def test_a_malformed_scope_is_invalid_scope(gateway: Gateway, http: httpx.AsyncClient) -> None:
    assertion = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    response = await post_token(http, token_form(assertion, scope='system/Task.r "quoted"'))
    assert_oauth_error(response, "invalid_scope")


async def test_a_scope_within_the_role_but_not_registered_is_invalid_scope(
    gateway: Gateway, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    with transaction(gateway.engine) as session:
        narrow = _register(session, tmp_path, "narrow", "A81001", Role.REFERRER, scopes=["system/Task.r"])
    assertion = sign(claims_for("narrow"), narrow.private_jwk)
    assert_oauth_error(await post_token(http, token_form(assertion, scope="system/Task.s")), "invalid_scope")


async def test_a_disabled_client_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    with transaction(gateway.engine) as session:
        disable_client(session, "gp-client")
    assertion = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    assert_oauth_error(await post_token(http, token_form(assertion)), "invalid_client")


async def test_an_unknown_client_is_invalid_client(gateway: Gateway, http: httpx.AsyncClient) -> None:
    assertion = sign(claims_for("nobody"), gateway.gp.private_jwk)
    assert_oauth_error(await post_token(http, token_form(assertion)), "invalid_client")


async def test_a_client_id_parameter_naming_another_client_is_invalid_client(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    assertion = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    assert_oauth_error(await post_token(http, token_form(assertion, client_id="vcse-client")), "invalid_client")


@pytest.mark.parametrize(
    "grant_type", ["authorization_code", "password", "urn:ietf:params:oauth:grant-type:jwt-bearer"]
)
async def test_another_grant_type_is_unsupported_grant_type(
    gateway: Gateway, http: httpx.AsyncClient, grant_type: str
) -> None:
    assertion = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    assert_oauth_error(await post_token(http, token_form(assertion, grant_type=grant_type)), "unsupported_grant_type")


async def test_a_missing_grant_type_is_invalid_request(gateway: Gateway, http: httpx.AsyncClient) -> None:
    form = token_form(sign(claims_for("gp-client"), gateway.gp.private_jwk))
    del form["grant_type"]
    assert_oauth_error(await post_token(http, form), "invalid_request")


async def test_a_json_body_is_invalid_request(gateway: Gateway, http: httpx.AsyncClient) -> None:
    form = token_form(sign(claims_for("gp-client"), gateway.gp.private_jwk))
    assert_oauth_error(await http.post("/oauth2/token", json=form), "invalid_request")


async def test_a_multipart_body_is_invalid_request(gateway: Gateway, http: httpx.AsyncClient) -> None:
    form = token_form(sign(claims_for("gp-client"), gateway.gp.private_jwk))
    response = await http.post("/oauth2/token", data=form, files={"x": ("x.txt", b"x")})
    assert_oauth_error(response, "invalid_request")


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe\x00garbage", b"grant_type=%ff%fe", b"=&=&==", b"a=" + b"b" * 20_000, b"&".join([b"k=v"] * 40)],
)
async def test_a_garbled_form_is_invalid_request(gateway: Gateway, http: httpx.AsyncClient, body: bytes) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert_oauth_error(await http.post("/oauth2/token", content=body, headers=headers), "invalid_request")


async def test_a_repeated_parameter_is_invalid_request(gateway: Gateway, http: httpx.AsyncClient) -> None:
    assertion = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    body = httpx.QueryParams(token_form(assertion)).add("scope", "system/Task.r").add("scope", "system/Task.s")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await http.post("/oauth2/token", content=str(body).encode(), headers=headers)
    assert_oauth_error(response, "invalid_request")


async def test_http_basic_authentication_gets_401_with_a_basic_challenge(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    response = await post_token(http, {"grant_type": "client_credentials"}, auth=("gp-client", "a-shared-secret"))
    assert_oauth_error(response, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")


async def test_plain_http_is_refused_unless_the_application_allows_it(
    gateway: Gateway, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUTHLIB_INSECURE_TRANSPORT")
    assertion = sign(claims_for("gp-client"), gateway.gp.private_jwk)
    response = await post_token(http, token_form(assertion))
    assert_oauth_error(response, "invalid_request")
    assert "https" in response.json()["error_description"]


@pytest.mark.parametrize(
    ("header", "claims"),
    [
        ({"alg": "ES384", "kid": 5}, {"sub": "gp-client"}),
        ({"alg": "ES384", "kid": "k"}, {"sub": 5}),
        ({"alg": "ES384", "kid": "k"}, {"sub": ["gp-client"]}),
        ({"alg": ["ES384"], "kid": "k"}, {"sub": "gp-client"}),
        ({"alg": "ES384", "kid": "k", "crit": ["exp"]}, {"sub": "gp-client"}),
        ({"alg": "ES384", "kid": "k"}, {"sub": "s" * 10_000}),
    ],
)
async def test_odd_headers_and_claims_are_4xx_never_500(
    gateway: Gateway, http: httpx.AsyncClient, header: dict[str, Any], claims: dict[str, Any]
) -> None:
    assertion = unsigned(header, claims) + "c2ln"
    assert_oauth_error(await post_token(http, token_form(assertion)), "invalid_client")


# --- the caller's transaction (jti row and audit row together) ---------------------------------


def test_with_a_session_the_jti_row_commits_or_rolls_back_with_the_caller(
    settings: Settings, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs on SQLite and, where its binaries exist, PostgreSQL (the suite's `engine` fixture)."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    SQLModel.metadata.create_all(engine)
    with transaction(engine) as session:
        _organisations(session)
        gp = _register(session, tmp_path, "gp-client", "A81001", Role.REFERRER)
    endpoint = TokenEndpoint(engine, settings, TokenKeys(settings.keys_dir))
    results: list[TokenResult] = []
    app = FastAPI()

    @app.post("/oauth2/token")
    async def token(request: Request) -> Response:
        with Session(engine) as session:
            response, result = await endpoint.handle(request, session=session)
            results.append(result)
            # The caller's audit row goes here, in the same transaction as the jti row.
            if request.query_params.get("commit") == "yes":
                session.commit()
            else:
                session.rollback()
        return response

    def used() -> int:
        with Session(engine) as session:
            return session.exec(select(func.count()).select_from(UsedJti)).one()

    assertion = sign(claims_for("gp-client"), gp.private_jwk)
    with TestClient(app, base_url=BASE) as client:
        assert client.post("/oauth2/token?commit=no", data=token_form(assertion)).status_code == 200
        assert used() == 0
        assert client.post("/oauth2/token?commit=yes", data=token_form(assertion)).status_code == 200
        assert used() == 1
        replay = client.post("/oauth2/token?commit=yes", data=token_form(assertion))
        assert replay.status_code == 401 and replay.json()["error"] == "invalid_client"
        assert used() == 1
    assert [(r.ok, r.client_id, r.error) for r in results] == [
        (True, "gp-client", None),
        (True, "gp-client", None),
        (False, None, "invalid_client"),
    ]


# --- the client side ---------------------------------------------------------------------------


def test_fetch_token_gets_a_token_and_raises_token_error_on_refusal(gateway: Gateway) -> None:
    with TestClient(gateway.app, base_url=BASE) as client:
        token = fetch_token(
            base_url=BASE,
            client_id="vcse-client",
            private_key_path=gateway.vcse.key_path,
            scope="system/Task.r",
            http=client,
        )
        assert verify_access_token(gateway.keys, token, issuer=BASE).scopes == {"system/Task.r"}
        with pytest.raises(TokenError) as refused:
            fetch_token(
                base_url=BASE,
                client_id="vcse-client",
                private_key_path=gateway.vcse.key_path,
                scope="system/ServiceRequest.c",
                http=client,
            )
    assert refused.value.error == "invalid_scope"
    assert refused.value.status_code == 400
    assert refused.value.description


def test_make_client_assertion_carries_the_rfc7523_claims(gateway: Gateway) -> None:
    private = gateway.gp.private_jwk
    assertion = make_client_assertion(client_id="gp-client", private_jwk=private, token_url=TOKEN_URL, lifetime=60)
    public = import_key({k: v for k, v in private.items() if k != "d"})
    decoded = jwt.decode(assertion, public, algorithms=["ES384"])
    assert decoded.header["kid"] == private["kid"]
    assert decoded.header["alg"] == "ES384"
    claims = decoded.claims
    assert claims["iss"] == claims["sub"] == "gp-client"
    assert claims["aud"] == TOKEN_URL
    assert claims["exp"] - claims["iat"] == 60
    assert claims["jti"]
    second = jwt.decode(
        make_client_assertion(client_id="gp-client", private_jwk=private, token_url=TOKEN_URL),
        public,
        algorithms=["ES384"],
    )
    assert second.claims["jti"] != claims["jti"]


def test_make_client_assertion_refuses_a_public_key(gateway: Gateway) -> None:
    public = {k: v for k, v in gateway.gp.private_jwk.items() if k != "d"}
    with pytest.raises(ValueError, match="private"):
        make_client_assertion(client_id="gp-client", private_jwk=public, token_url=TOKEN_URL)


def test_make_client_assertion_uses_rs384_for_an_rsa_key_without_alg() -> None:
    key = RSAKey.generate_key(2048, private=True)
    key.ensure_kid()
    assertion = make_client_assertion(client_id="c", private_jwk=key.as_dict(private=True), token_url=TOKEN_URL)
    assert jwt.decode(assertion, key, algorithms=["RS384"]).header["alg"] == "RS384"


# --- the scope rule, as a pure function ------------------------------------------------------------


def test_granted_scopes_default_to_the_registered_scopes_within_the_ceiling() -> None:
    registered = ["system/Task.rsu", "system/Observation.c", "system/ServiceRequest.c"]  # the last is above VCSE
    assert granted_scopes(role=Role.VCSE, registered=registered, requested=None) == {
        "system/Task.rsu",
        "system/Observation.c",
    }
    assert granted_scopes(role=Role.VCSE, registered=registered, requested="  ") == {
        "system/Task.rsu",
        "system/Observation.c",
    }


def test_granted_scopes_narrow_to_registration_and_ceiling_and_refuse_when_nothing_remains() -> None:
    from authlib.oauth2.rfc6749 import InvalidScopeError

    assert granted_scopes(role=Role.VCSE, registered=["system/Task.rsu"], requested="system/Task.u") == {
        "system/Task.u"
    }
    assert granted_scopes(role=Role.VCSE, registered=["system/Task.rsu"], requested="system/Task.cruds openid") == {
        "system/Task.rus"
    }
    assert granted_scopes(role=Role.VCSE, registered=["system/Task.rsu"], requested="system/Task.read") == {
        "system/Task.rs"
    }
    for requested in ("system/Task.d", "system/Observation.c", "system/Task.x", "openid"):
        with pytest.raises(InvalidScopeError):
            granted_scopes(role=Role.VCSE, registered=["system/Task.rsu"], requested=requested)
    with pytest.raises(InvalidScopeError):
        granted_scopes(role=Role.VCSE, registered=["system/ServiceRequest.c"], requested=None)


def test_a_token_from_another_issuer_does_not_verify(gateway: Gateway) -> None:
    with TestClient(gateway.app, base_url=BASE) as client:
        token = fetch_token(base_url=BASE, client_id="gp-client", private_key_path=gateway.gp.key_path, http=client)
    with pytest.raises(FhirError):
        verify_access_token(gateway.keys, token, issuer="https://another.example")
