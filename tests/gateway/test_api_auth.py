"""Who may call, proved through the full application: the token endpoint with real client assertions
(RFC 7523 `private_key_jwt`), bearer tokens on the FHIR, VCSE and admin routes, and the SMART scope check.

The token endpoint's rules are unit-tested on a small app in test_auth_server.py; here each rule is
shown end to end, with its AuditEvent (DCM 110114, outcome 4) in the audit log of the real app.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from joserfc import jwt
from joserfc.jwk import ECKey, import_key
from sqlalchemy import func
from sqlmodel import Session, select

from audit.store import AuditEntry
from gateway.auth.client_side import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.auth.keys import TOKEN_ALG
from gateway.auth.principal import ROLE_SCOPES, Principal, Role
from gateway.auth.tokens import issue_access_token
from gateway.demo import DEMO_CLIENTS, key_path

TOKEN_URL = "http://testserver/oauth2/token"
RFC6749_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
}
USER_AUTHENTICATION = "110114"  # DCM "User Authentication" (auth_event)


# -- helpers ------------------------------------------------------------------------------------


def private_jwk(settings, client_id: str) -> dict[str, Any]:
    return json.loads(key_path(settings, client_id).read_text())


def assertion_for(settings, client_id: str, *, token_url: str = TOKEN_URL) -> str:
    return make_client_assertion(client_id=client_id, private_jwk=private_jwk(settings, client_id), token_url=token_url)


def token_form(assertion: str | None, **extra: str) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE}
    if assertion is not None:
        form["client_assertion"] = assertion
    return {**form, **extra}


def request_token(client, settings, client_id: str, **extra: str) -> str:
    response = client.post("/oauth2/token", data=token_form(assertion_for(settings, client_id), **extra))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Request-ID": str(uuid.uuid4())}


def auth_events(engine, outcome: str) -> list[dict[str, Any]]:
    with Session(engine) as session:
        rows = session.exec(
            select(AuditEntry)
            .where(AuditEntry.type_code == USER_AUTHENTICATION, AuditEntry.outcome == outcome)
            .order_by(AuditEntry.seq)
        ).all()
        return [json.loads(row.content) for row in rows if row.content]


def refused_count(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(AuditEntry).where(AuditEntry.outcome == "4")).one()


def b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def sign_claims(claims: dict[str, Any], jwk: dict[str, Any]) -> str:
    key = import_key(jwk)
    header = {"alg": jwk.get("alg", "ES384"), "typ": "JWT", "kid": jwk["kid"]}
    return jwt.encode(header, claims, key, algorithms=[header["alg"]])


def assertion_claims(client_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "iat": now, "exp": now + 240}
    return {**claims, "jti": str(uuid.uuid4()), **overrides}


def gateway_token(app, client_id: str, *, issuer: str = "http://testserver", ttl: int = 300, scopes=None) -> str:
    """Returns an access token signed with the gateway's own key (the way the token endpoint signs)."""
    demo = next(c for c in DEMO_CLIENTS if c.client_id == client_id)
    granted = frozenset(scopes if scopes is not None else ROLE_SCOPES[demo.role])
    principal = Principal(demo.client_id, demo.organisation, demo.role, granted)
    return issue_access_token(app.state.spgw.token_keys, principal, issuer=issuer, ttl=ttl)


def assert_operation_outcome(response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [issue["code"] for issue in outcome["issue"]] == [code]
    assert outcome["issue"][0]["diagnostics"]
    return outcome


# -- the token endpoint in the app --------------------------------------------------------------


def test_a_real_client_assertion_gets_an_es384_token_that_works_on_the_fhir_api(client, settings, engine) -> None:
    response = client.post("/oauth2/token", data=token_form(assertion_for(settings, "demo-gp")))

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert set(body["scope"].split()) == set(ROLE_SCOPES[Role.REFERRER])
    header = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    assert (header["alg"], header["typ"]) == (TOKEN_ALG, "at+jwt")
    published = client.get("/oauth2/jwks").json()["keys"]
    assert header["kid"] in [key["kid"] for key in published]
    assert all("d" not in key for key in published)

    search = client.get("/fhir/ServiceRequest", headers=bearer(body["access_token"]))
    assert search.status_code == 200, search.text
    assert (search.json()["resourceType"], search.json()["type"]) == ("Bundle", "searchset")
    issued = auth_events(engine, "0")
    assert len(issued) == 1
    assert issued[0]["outcomeDesc"] == "access token issued"
    assert "demo-gp" in json.dumps(issued[0]["agent"])


def _no_assertion(client, settings) -> dict[str, str]:
    return token_form(None)


def _malformed_assertion(client, settings) -> dict[str, str]:
    return token_form("this.is-not-a.jwt")


def _wrong_signature(client, settings) -> dict[str, str]:
    # A fresh key that claims to be demo-gp's registered key (same kid, same alg).
    demo_kid = private_jwk(settings, "demo-gp")["kid"]
    forged = ECKey.generate_key("P-384", parameters={"kid": demo_kid, "alg": "ES384"}, private=True)
    return token_form(
        make_client_assertion(client_id="demo-gp", private_jwk=forged.as_dict(private=True), token_url=TOKEN_URL)
    )


def _another_clients_key(client, settings) -> dict[str, str]:
    other = private_jwk(settings, "demo-gp-b")
    return token_form(make_client_assertion(client_id="demo-gp", private_jwk=other, token_url=TOKEN_URL))


def _another_clients_key_under_our_kid(client, settings) -> dict[str, str]:
    other = {**private_jwk(settings, "demo-gp-b"), "kid": private_jwk(settings, "demo-gp")["kid"]}
    return token_form(make_client_assertion(client_id="demo-gp", private_jwk=other, token_url=TOKEN_URL))


def _expired(client, settings) -> dict[str, str]:
    now = int(time.time())
    claims = assertion_claims("demo-gp", iat=now - 900, exp=now - 600)
    return token_form(sign_claims(claims, private_jwk(settings, "demo-gp")))


def _wrong_audience(client, settings) -> dict[str, str]:
    return token_form(assertion_for(settings, "demo-gp", token_url="http://elsewhere/oauth2/token"))


def _replayed_jti(client, settings) -> dict[str, str]:
    assertion = assertion_for(settings, "demo-gp")
    first = client.post("/oauth2/token", data=token_form(assertion))
    assert first.status_code == 200, first.text
    return token_form(assertion)


def _scope_the_role_may_not_have(client, settings) -> dict[str, str]:
    return token_form(assertion_for(settings, "demo-vcse"), scope="system/ServiceRequest.rs")


def _disabled_by_cli(client, settings) -> dict[str, str]:
    from gateway.cli import main

    result = CliRunner().invoke(main, ["clients", "disable", "demo-gp", "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 0, result.output
    return token_form(assertion_for(settings, "demo-gp"))


def _disabled_by_admin_api(client, settings) -> dict[str, str]:
    admin = request_token(client, settings, "demo-admin")
    response = client.post("/admin/v1/clients/demo-gp/disable", headers=bearer(admin))
    assert response.status_code == 200, response.text
    return token_form(assertion_for(settings, "demo-gp"))


REFUSALS = {
    "no assertion": (_no_assertion, "invalid_client"),
    "malformed assertion": (_malformed_assertion, "invalid_client"),
    "wrong signature under the demo kid": (_wrong_signature, "invalid_client"),
    "another client's key": (_another_clients_key, "invalid_client"),
    "another client's key under our kid": (_another_clients_key_under_our_kid, "invalid_client"),
    "expired": (_expired, "invalid_client"),
    "wrong aud": (_wrong_audience, "invalid_client"),
    "replayed jti": (_replayed_jti, "invalid_client"),
    "scope the role may not have": (_scope_the_role_may_not_have, "invalid_scope"),
    "client disabled with spgw clients disable": (_disabled_by_cli, "invalid_client"),
    "client disabled by an admin": (_disabled_by_admin_api, "invalid_client"),
}


@pytest.fixture
def cli_env(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads its settings from the environment; point it at this test's database (restored after)."""
    monkeypatch.setenv("SPGW_DATA_DIR", str(settings.data_dir))
    if settings.database_url:
        monkeypatch.setenv("SPGW_DATABASE_URL", settings.database_url)
    else:
        monkeypatch.delenv("SPGW_DATABASE_URL", raising=False)


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
def test_a_refused_token_request_is_an_rfc6749_error_and_an_audit_event(
    client, settings, engine, cli_env, case: str
) -> None:
    build, error = REFUSALS[case]
    form = build(client, settings)
    refused_before = len(auth_events(engine, "4"))

    response = client.post("/oauth2/token", data=form)

    assert 400 <= response.status_code < 500, response.text
    assert response.status_code == (401 if error == "invalid_client" else 400)
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    assert body["error"] in RFC6749_ERRORS
    assert "access_token" not in body
    refused = auth_events(engine, "4")
    assert len(refused) == refused_before + 1
    assert refused[-1]["type"]["code"] == USER_AUTHENTICATION
    assert refused[-1]["outcome"] == "4"
    assert refused[-1]["outcomeDesc"].startswith(f"token refused: {error}")


# -- bearer tokens on the FHIR routes ---------------------------------------------------------


def _forged_alg_none(app) -> str:
    kid = app.state.spgw.token_keys.current.kid
    now = int(time.time())
    claims = {"iss": "http://testserver", "aud": "http://testserver", "sub": "demo-gp", "client_id": "demo-gp"}
    claims |= {"iat": now, "exp": now + 300, "org": "A81001", "role": "referrer"}
    claims["scope"] = " ".join(ROLE_SCOPES[Role.REFERRER])
    return f"{b64url({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{b64url(claims)}."


def _signed_by_another_key(app) -> str:
    # Same kid and alg as the gateway's current key, but not the gateway's key.
    kid = app.state.spgw.token_keys.current.kid
    impostor = ECKey.generate_key("P-384", parameters={"kid": kid, "alg": TOKEN_ALG}, private=True)
    now = int(time.time())
    claims = {"iss": "http://testserver", "aud": "http://testserver", "sub": "demo-gp", "iat": now, "exp": now + 300}
    claims |= {"org": "A81001", "role": "referrer", "scope": " ".join(ROLE_SCOPES[Role.REFERRER])}
    return jwt.encode({"alg": TOKEN_ALG, "typ": "at+jwt", "kid": kid}, claims, impostor, algorithms=[TOKEN_ALG])


BAD_BEARERS = {
    "no token": lambda app: None,
    "empty bearer": lambda app: "Bearer ",
    "basic scheme": lambda app: "Basic ZGVtby1ncDpzZWNyZXQ=",
    "malformed": lambda app: "Bearer not-a-jwt",
    "alg none": lambda app: f"Bearer {_forged_alg_none(app)}",
    "signed by a key that is not the gateway's": lambda app: f"Bearer {_signed_by_another_key(app)}",
    "expired": lambda app: f"Bearer {gateway_token(app, 'demo-gp', ttl=-120)}",
    "issued for another issuer": lambda app: f"Bearer {gateway_token(app, 'demo-gp', issuer='http://elsewhere')}",
}


@pytest.mark.parametrize("case", list(BAD_BEARERS), ids=list(BAD_BEARERS))
def test_a_bad_bearer_token_is_401_login_with_a_challenge(client, app, case: str) -> None:
    authorization = BAD_BEARERS[case](app)
    headers = {"Authorization": authorization} if authorization is not None else {}

    response = client.get("/fhir/ServiceRequest", headers=headers)

    assert_operation_outcome(response, 401, "login")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/fhir/ServiceRequest/any-id"),
        ("GET", "/fhir/Patient"),
        ("POST", "/fhir/$process-message"),
        ("POST", "/fhir/ServiceRequest"),
        ("GET", "/vcse/v1/referrals"),
        ("POST", "/vcse/v1/referrals/SPR-X/status"),
        ("GET", "/admin/v1/clients"),
        ("POST", "/admin/v1/clients/demo-gp/disable"),
    ],
)
def test_every_protected_route_needs_a_token(client, engine, method: str, path: str) -> None:
    refused_before = refused_count(engine)

    response = client.request(method, path, headers={"Content-Type": "application/fhir+json"}, content=b"{}")

    assert_operation_outcome(response, 401, "login")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert refused_count(engine) == refused_before + 1  # the refusal is audited too


def test_a_token_stops_working_at_once_when_its_client_is_disabled(client, settings) -> None:
    gp = request_token(client, settings, "demo-gp")
    assert client.get("/fhir/ServiceRequest", headers=bearer(gp)).status_code == 200
    admin = request_token(client, settings, "demo-admin")

    disabled = client.post("/admin/v1/clients/demo-gp/disable", headers=bearer(admin))

    assert disabled.status_code == 200, disabled.text
    assert disabled.json() == {"client_id": "demo-gp", "active": False}
    outcome = assert_operation_outcome(client.get("/fhir/ServiceRequest", headers=bearer(gp)), 401, "login")
    assert "disabled" in outcome["issue"][0]["diagnostics"]
    # Another practice's client is untouched.
    other = request_token(client, settings, "demo-gp-b")
    assert client.get("/fhir/ServiceRequest", headers=bearer(other)).status_code == 200


def test_rotating_the_gateway_key_keeps_tokens_signed_with_the_previous_key_valid(client, app, settings) -> None:
    before = request_token(client, settings, "demo-gp")
    keys = app.state.spgw.token_keys
    old_kid = keys.current.kid

    new_kid = keys.rotate()

    assert new_kid != old_kid
    assert [k["kid"] for k in client.get("/oauth2/jwks").json()["keys"]] == [new_kid, old_kid]
    assert client.get("/fhir/ServiceRequest", headers=bearer(before)).status_code == 200
    after = request_token(client, settings, "demo-gp")
    assert json.loads(base64.urlsafe_b64decode(after.split(".")[0] + "=="))["kid"] == new_kid
    keys.rotate()  # a second rotation drops the first key from the ring
    assert_operation_outcome(client.get("/fhir/ServiceRequest", headers=bearer(before)), 401, "login")
    assert client.get("/fhir/ServiceRequest", headers=bearer(after)).status_code == 200


# -- valid tokens without the scope ---------------------------------------------------------------

FORBIDDEN = {
    "IG officer sends a referral": ("demo-ig", "POST", "/fhir/$process-message"),
    "VCSE host searches ServiceRequests": ("demo-vcse", "GET", "/fhir/ServiceRequest"),
    "VCSE host writes a Consent": ("demo-vcse", "POST", "/fhir/Consent"),
    "admin reads a Patient": ("demo-admin", "GET", "/fhir/Patient/x"),
    "admin searches ServiceRequests": ("demo-admin", "GET", "/fhir/ServiceRequest"),
    "referrer lists organisations": ("demo-gp", "GET", "/admin/v1/organisations"),
    "referrer disables another client": ("demo-gp", "POST", "/admin/v1/clients/demo-gp-b/disable"),
    "referrer moves a VCSE referral": ("demo-gp", "POST", "/vcse/v1/referrals/SPR-X/status"),
    "referrer submits VCSE outcomes": ("demo-gp", "POST", "/vcse/v1/referrals/SPR-X/outcomes"),
    "IG officer lists clients": ("demo-ig", "GET", "/admin/v1/clients"),
}


@pytest.mark.parametrize("case", list(FORBIDDEN), ids=list(FORBIDDEN))
def test_a_valid_token_without_the_scope_is_403_forbidden(client, settings, case: str) -> None:
    client_id, method, path = FORBIDDEN[case]
    token = request_token(client, settings, client_id)
    headers = {**bearer(token), "X-Correlation-ID": str(uuid.uuid4()), "Content-Type": "application/fhir+json"}

    response = client.request(method, path, headers=headers, content=b"{}")

    outcome = assert_operation_outcome(response, 403, "forbidden")
    assert "system/" in outcome["issue"][0]["diagnostics"]


def test_a_token_asked_for_fewer_scopes_is_held_to_them(client, settings) -> None:
    narrow = request_token(client, settings, "demo-gp", scope="system/Patient.rs")

    assert client.get("/fhir/Patient", headers=bearer(narrow)).status_code == 200
    assert_operation_outcome(client.get("/fhir/ServiceRequest", headers=bearer(narrow)), 403, "forbidden")


def test_spgw_clients_disable_refuses_an_unknown_client(settings, cli_env) -> None:
    from gateway.cli import main

    result = CliRunner().invoke(main, ["clients", "disable", "no-such-client", "--data-dir", str(settings.data_dir)])

    assert result.exit_code != 0
    assert "not registered" in result.output


def test_demo_private_keys_are_owner_only_files(app, settings) -> None:
    for demo in DEMO_CLIENTS:
        path: Path = key_path(settings, demo.client_id)
        assert path.stat().st_mode & 0o777 == 0o600
        assert "d" in json.loads(path.read_text())


# -- docs/security.md --------------------------------------------------------------------------------


def test_the_roles_and_scopes_table_in_docs_security_matches_role_scopes() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text(encoding="utf-8")
    start = doc.index("<!-- roles-and-scopes:")
    table = doc[start : doc.index("<!-- end roles-and-scopes -->", start)]
    documented: dict[str, list[str]] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            documented[cells[0].strip("`")] = [scope.strip("`") for scope in cells[1].split()]

    assert documented == {str(role): list(scopes) for role, scopes in ROLE_SCOPES.items()}
