"""Issue 10 item 7 (SSRF) and item 18 (Standard Webhooks), through the admin API and the worker:
endpoint URLs are https to a public host unless SPGW_ALLOW_INSECURE_ENDPOINTS=true; the host is resolved
and checked again at send time through an injectable resolver (a stub here: no real DNS); a change is
audited with the old and new URL; `last_error` keeps only the receiver's status code; a CRM verifies
the webhook with the stock `standardwebhooks` library."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from standardwebhooks import Webhook

from audit.store import AuditEntry
from gateway.delivery import worker
from gateway.delivery.signing import WEBHOOK_ID
from gateway.endpoints import check_resolved, check_url
from gateway.models import OutboxMessage
from tests.gateway.test_consent_flow import nhs_number, post_referral, referral_message

PUBLIC_WEBHOOK = "https://crm.example.org/spgw/webhook"
REFUSED = [
    "http://169.254.169.254/latest",  # cloud metadata, and plain http
    "https://169.254.169.254/latest",
    "https://127.0.0.1/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://10.1.2.3/hook",
    "https://192.168.0.10/hook",
    "https://172.16.5.4/hook",
    "https://2852039166/hook",  # 169.254.169.254 as a decimal number
    "https://0x7f000001/hook",
    "https://0177.0.0.1/hook",
    "https://user:pw@crm.example.org/hook",
    "https://localhost/hook",
    "http://crm.example.org/hook",
    "ftp://crm.example.org/hook",
]


@pytest.fixture
def strict_client(settings, engine, monkeypatch: pytest.MonkeyPatch):
    """The gateway as production runs it: SPGW_ALLOW_INSECURE_ENDPOINTS unset."""
    from gateway.app import create_app
    from gateway.demo import seed_directory

    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    strict = settings.model_copy(update={"allow_insecure_endpoints": False})
    app = create_app(strict, engine)
    seed_directory(engine, strict)
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def _put(client, token_for, org: str, **fields):  # type: ignore[no-untyped-def]
    body = {"name": f"Host {org}", "kind": "vcse", **fields}
    return client.put(f"/admin/v1/organisations/{org}", json=body, headers=token_for("demo-admin"))


@pytest.mark.parametrize("url", REFUSED)
def test_the_admin_api_refuses_an_unsafe_webhook_url(strict_client, token_for, url: str) -> None:
    response = _put(strict_client, token_for, "8VC01", delivery_mode="webhook", webhook_url=url)
    assert response.status_code == 422, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("url", REFUSED[:8])
def test_the_admin_api_refuses_an_unsafe_fhir_endpoint(strict_client, token_for, url: str) -> None:
    body = {"name": "Riverside Surgery", "kind": "gp-practice", "fhir_endpoint": url}
    response = strict_client.put("/admin/v1/organisations/A81001", json=body, headers=token_for("demo-admin"))
    assert response.status_code == 422, response.text


def test_https_to_a_public_host_is_accepted_and_the_change_audited_with_both_urls(
    strict_client, token_for, engine
) -> None:
    first = _put(strict_client, token_for, "8VC01", delivery_mode="webhook", webhook_url=PUBLIC_WEBHOOK)
    assert first.status_code == 200, first.text
    moved = "https://crm2.example.org/in"
    assert _put(strict_client, token_for, "8VC01", delivery_mode="webhook", webhook_url=moved).status_code == 200

    with Session(engine) as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.subtype_code == "admin-put-organisation")).all()
    last = json.loads(rows[-1].content)
    assert f"webhook_url {PUBLIC_WEBHOOK} -> {moved}" in last["outcomeDesc"]


def test_insecure_endpoints_allow_loopback_http_but_never_link_local() -> None:
    assert check_url("http://127.0.0.1:8080/hook", allow_insecure=True)
    assert check_url("http://10.0.0.2/hook", allow_insecure=True)
    with pytest.raises(ValueError):
        check_url("http://169.254.169.254/latest", allow_insecure=True)
    with pytest.raises(ValueError):
        check_url("http://[fe80::1]/x", allow_insecure=True)


def test_a_name_is_checked_again_at_send_time_with_the_resolver() -> None:
    check_resolved(PUBLIC_WEBHOOK, allow_insecure=False, resolver=lambda host, port: ["93.184.216.34"])
    for rebound in (["10.0.0.7"], ["93.184.216.34", "169.254.169.254"], ["::1"]):
        with pytest.raises(ValueError, match="resolves to"):
            check_resolved(PUBLIC_WEBHOOK, allow_insecure=False, resolver=lambda host, port, r=rebound: r)


def _queued_webhook(client, token_for, engine, seed: int) -> tuple[str, str]:
    answer = _put(client, token_for, "8VC01", delivery_mode="webhook", webhook_url=PUBLIC_WEBHOOK).json()
    post_referral(client, token_for, referral_message(nhs_number(seed), "8VC01", consent_for=("8VC01",)))
    with Session(engine) as session:
        [row] = session.exec(select(OutboxMessage)).all()
    return answer["webhook_secret"], row.dedup_key


def test_a_host_rebound_to_a_private_address_is_not_sent_to(strict_client, token_for, engine, settings) -> None:
    _, packet_id = _queued_webhook(strict_client, token_for, engine, 3100)
    strict = settings.model_copy(update={"allow_insecure_endpoints": False})

    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        route = mock.post(PUBLIC_WEBHOOK).mock(return_value=httpx.Response(201))
        with httpx.Client() as http:
            landed = worker.run_once(engine, strict, http, resolver=lambda host, port: ["10.9.8.7"])

    assert landed == 0 and route.call_count == 0
    with Session(engine) as session:
        row = session.exec(select(OutboxMessage).where(OutboxMessage.dedup_key == packet_id)).one()
    assert row.status == "dead"
    assert "resolves to 10.9.8.7" in (row.last_error or "")


def test_last_error_keeps_the_status_code_not_the_receivers_answer(strict_client, token_for, engine, settings) -> None:
    _, packet_id = _queued_webhook(strict_client, token_for, engine, 3200)
    strict = settings.model_copy(update={"allow_insecure_endpoints": False})
    with respx.mock(assert_all_mocked=True) as mock:
        mock.post(PUBLIC_WEBHOOK).mock(return_value=httpx.Response(400, text="internal detail: db=10.0.0.3 pw=x"))
        with httpx.Client() as http:
            worker.run_once(engine, strict, http, resolver=lambda host, port: ["93.184.216.34"])
    with Session(engine) as session:
        row = session.exec(select(OutboxMessage).where(OutboxMessage.dedup_key == packet_id)).one()
    assert row.last_error == "8VC01 answered HTTP 400"


def test_a_crm_verifies_the_webhook_with_the_standard_webhooks_library(
    strict_client, token_for, engine, settings
) -> None:
    secret, packet_id = _queued_webhook(strict_client, token_for, engine, 3300)
    strict = settings.model_copy(update={"allow_insecure_endpoints": False})
    with respx.mock(assert_all_mocked=True) as mock:
        route = mock.post(PUBLIC_WEBHOOK).mock(return_value=httpx.Response(204))
        with httpx.Client() as http:
            assert worker.run_once(engine, strict, http, resolver=lambda host, port: ["93.184.216.34"]) == 1

    request = route.calls.last.request
    headers = dict(request.headers)
    assert headers[WEBHOOK_ID] == packet_id
    payload = Webhook(secret).verify(request.content, headers)
    assert payload["packet_id"] == packet_id
    # The id is signed: the same body under another id does not verify.
    with pytest.raises(Exception, match="signature"):
        Webhook(secret).verify(request.content, {**headers, WEBHOOK_ID: "someone-elses-id"})
    assert headers["x-spgw-signature"].startswith("v1=")  # the old header, kept one release
