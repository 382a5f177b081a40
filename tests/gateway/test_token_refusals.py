"""Issue 10 items 12 and 13, through the running token endpoint: one `invalid_client` answer for an
unknown client and for a known client whose assertion does not verify (no client-id oracle), and a
refused request audited with the claimed `sub` as an unverified claim, never as the client."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc.jwk import ECKey

from tests.gateway.test_api_auth import assertion_claims, auth_events, private_jwk, sign_claims, token_form

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def _stranger_key(kid: str) -> dict[str, Any]:
    key = ECKey.generate_key("P-384", private=True).as_dict(private=True)
    return {**key, "kid": kid, "alg": "ES384"}


def _ask(client, claimed: str, kid: str) -> tuple[int, dict[str, Any]]:
    response = client.post("/oauth2/token", data=token_form(sign_claims(assertion_claims(claimed), _stranger_key(kid))))
    return response.status_code, response.json()


def test_unknown_client_and_bad_assertion_get_the_same_answer(client, settings) -> None:
    registered_kid = private_jwk(settings, "demo-gp")["kid"]

    unknown = _ask(client, "no-such-client", registered_kid)
    wrong_key_known_kid = _ask(client, "demo-gp", registered_kid)
    wrong_kid = _ask(client, "demo-gp", "no-such-kid")

    assert unknown[0] == 401
    assert unknown[1]["error"] == "invalid_client"
    assert unknown == wrong_key_known_kid == wrong_kid


def test_a_refused_request_records_the_claimed_sub_as_unverified(client, engine, settings) -> None:
    _ask(client, "demo-gp", private_jwk(settings, "demo-gp")["kid"])

    [*_, event] = auth_events(engine, "4")
    caller = next(a for a in event["agent"] if a.get("requestor"))
    assert "identifier" not in caller["who"]  # not recorded as the client
    assert caller["who"]["display"] == "unidentified client (unverified claim: sub=demo-gp)"
    assert "does not verify" in event["outcomeDesc"]  # the precise reason stays in the audit


def test_the_host_header_does_not_choose_the_audience_in_process(client, settings) -> None:
    """Item 14 without SPGW_PUBLIC_BASE_URL (as `uvicorn gateway.asgi:app` would run): the base is the
    address served, so an assertion aimed at a Host the caller chose does not verify."""
    from gateway.auth.client_side import make_client_assertion

    jwk = private_jwk(settings, "demo-gp")
    forged = make_client_assertion(client_id="demo-gp", private_jwk=jwk, token_url="http://evil.example/oauth2/token")
    response = client.post("/oauth2/token", data=token_form(forged), headers={"Host": "evil.example"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
