"""Issue 10 item 6, through the admin API, the IG API, the token endpoint and the CLI: an admin who
registers a client (with a key it holds) cannot obtain a token for it until the operator confirms the
keys out of band on the gateway host (`spgw clients approve`); widening an agreement to identifying
fields waits for an IG officer, whose approval is in the audit."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from joserfc.jwk import ECKey
from sqlmodel import Session, select

from audit.store import AuditEntry
from gateway.auth.client_side import make_client_assertion
from gateway.cli import main as spgw
from tests.gateway.test_api_auth import TOKEN_URL, cli_env, token_form  # noqa: F401 (cli_env is a fixture)


def _admins_own_key() -> dict:
    key = ECKey.generate_key("P-384", parameters={"alg": "ES384", "use": "sig"}, private=True)
    key.ensure_kid()
    return key.as_dict(private=True)


def _register(client, token_for, client_id: str, role: str, private: dict):  # type: ignore[no-untyped-def]
    public = {k: v for k, v in private.items() if k != "d"}
    body = {"client_id": client_id, "organisation": "A81001", "role": role, "jwks": {"keys": [public]}}
    return client.post("/admin/v1/clients", json=body, headers=token_for("demo-admin"))


def _token(client, client_id: str, private: dict):  # type: ignore[no-untyped-def]
    assertion = make_client_assertion(client_id=client_id, private_jwk=private, token_url=TOKEN_URL)
    return client.post("/oauth2/token", data=token_form(assertion))


@pytest.mark.parametrize("role", ["referrer", "ig-officer", "admin"])
def test_an_admin_cannot_get_a_token_for_a_client_it_registered(client, token_for, role: str) -> None:
    private = _admins_own_key()

    registered = _register(client, token_for, f"rogue-{role}", role, private)

    assert registered.status_code == 201, registered.text
    assert registered.json()["pending_approval"] is True
    refused = _token(client, f"rogue-{role}", private)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_the_operator_approves_on_the_host_and_then_the_client_works(client, token_for, settings, cli_env) -> None:  # noqa: F811
    private = _admins_own_key()
    _register(client, token_for, "new-gp-system", "referrer", private)

    result = CliRunner().invoke(spgw, ["clients", "approve", "new-gp-system", "--data-dir", str(settings.data_dir)])

    assert result.exit_code == 0, result.output
    assert private["kid"] in result.output  # the thumbprint to read to the organisation
    assert _token(client, "new-gp-system", private).status_code == 200


def test_the_admin_api_has_no_way_to_approve(client, token_for) -> None:
    _register(client, token_for, "pending-one", "referrer", _admins_own_key())
    for path in ("/admin/v1/clients/pending-one/approve", "/admin/v1/clients/pending-one/enable"):
        assert client.post(path, headers=token_for("demo-admin")).status_code in (404, 405)


def _put_agreement(client, token_for, fields: list[str]):  # type: ignore[no-untyped-def]
    body = {"name": "Lincoln Befriending Network", "kind": "vcse", "allowed_fields": fields}
    return client.put("/admin/v1/organisations/8VC01", json=body, headers=token_for("demo-admin"))


def test_widening_to_the_nhs_number_waits_for_an_ig_officer(client, token_for, engine) -> None:
    before = _put_agreement(client, token_for, ["person.first_name", "referral.need_categories"]).json()
    assert "pending_agreement" not in before

    asked = _put_agreement(client, token_for, ["person.first_name", "person.nhs_number", "referral.need_categories"])

    assert asked.status_code == 200
    view = asked.json()
    assert "person.nhs_number" not in view["data_sharing_agreement"]["allowed_fields"]
    assert "person.nhs_number" in view["pending_agreement"]["allowed_fields"]
    # The admin cannot approve its own request; the IG officer can.
    approve = "/ig/v1/organisations/8VC01/agreement/approve"
    assert client.post(approve, headers=token_for("demo-admin")).status_code == 403
    approved = client.post(approve, headers=token_for("demo-ig"))
    assert approved.status_code == 200, approved.text
    assert "person.nhs_number" in approved.json()["data_sharing_agreement"]["allowed_fields"]
    with Session(engine) as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.subtype_code == "ig-approve-agreement")).all()
    [event] = [json.loads(r.content) for r in rows if r.outcome == "0"]
    assert "person.nhs_number" in event["outcomeDesc"]
    assert "demo-ig" in json.dumps(event["agent"])
    assert client.post(approve, headers=token_for("demo-ig")).status_code == 404  # nothing waits now


def test_narrowing_or_default_fields_apply_at_once(client, token_for) -> None:
    answer = _put_agreement(client, token_for, ["referral.need_categories"]).json()
    assert answer["data_sharing_agreement"]["allowed_fields"] == ["referral.need_categories"]
    assert "pending_agreement" not in answer
