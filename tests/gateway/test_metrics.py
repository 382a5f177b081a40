"""Prometheus metrics: requests by route template and status, referrals by outcome and FHIR issue code,
token refusals, deliveries, and database gauges; never a patient identifier or a concrete path."""

from __future__ import annotations

from prometheus_client import REGISTRY, generate_latest

from gateway.metrics import registry_for
from tests.profiles.gp_message import referral_bundle

PATIENT = "9990001006"
BAD_NHS = "9990001007"  # fails Modulus 11
FHIR = {"Content-Type": "application/fhir+json"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_requests_referrals_and_refusals_are_counted_by_template_and_code(client, token_for, engine) -> None:
    route = "/fhir/$process-message"
    before = {
        "ok": sample("spgw_http_requests_total", route=route, status="200"),
        "accepted": sample("spgw_referral_messages_total", outcome="accepted", reason=""),
        "refused": sample("spgw_referral_messages_total", outcome="refused", reason="invalid"),
        "token": sample("spgw_token_refusals_total", route="/fhir/ServiceRequest"),
        "latency": sample("spgw_http_request_duration_seconds_count", route=route),
    }
    good = referral_bundle(PATIENT, "A81001", vcse_id="8VC01", ref_id="MET-1", consent_to=["8VC01"])
    assert client.post(route, json=good, headers={**token_for("demo-gp"), **FHIR}).status_code == 200
    bad = referral_bundle(BAD_NHS, "A81001", vcse_id="8VC01", ref_id="MET-2", consent_to=["8VC01"])
    refused = client.post(route, json=bad, headers={**token_for("demo-gp"), **FHIR})
    assert refused.status_code == 422
    code = refused.json()["issue"][0]["code"]
    assert client.get("/fhir/ServiceRequest", headers={"Authorization": "Bearer forged"}).status_code == 401
    assert client.get(f"/fhir/Patient/{PATIENT}", headers=token_for("demo-gp")).status_code == 404

    assert sample("spgw_http_requests_total", route=route, status="200") == before["ok"] + 1
    assert sample("spgw_http_request_duration_seconds_count", route=route) == before["latency"] + 2
    assert sample("spgw_referral_messages_total", outcome="accepted", reason="") == before["accepted"] + 1
    assert sample("spgw_referral_messages_total", outcome="refused", reason=code) >= 1
    assert sample("spgw_token_refusals_total", route="/fhir/ServiceRequest") == before["token"] + 1

    exposed = generate_latest(registry_for(engine)).decode()
    assert "# TYPE spgw_http_requests_total counter" in exposed
    assert "spgw_audit_log_size" in exposed and "spgw_database_up 1.0" in exposed
    assert PATIENT not in exposed and BAD_NHS not in exposed  # templates, never concrete paths
    assert 'route="/fhir/Patient/{resource_id}"' in exposed


def test_deliveries_are_counted_by_result(app, engine, settings) -> None:
    from gateway.db import transaction
    from gateway.delivery.worker import run_once
    from gateway.models import Organisation, OutboxMessage

    def count(result: str) -> float:
        return sample("spgw_deliveries_total", result=result)

    before = {r: count(r) for r in ("succeeded", "retried", "dead-lettered")}
    with transaction(engine) as session:
        # one write-back to a GP with no FHIR endpoint (permanent: dead letter), one to a port nobody
        # listens on (transport error: retried)
        session.add(OutboxMessage(kind="fhir-writeback", target="A81001", dedup_key="WB-DEAD", body="{}"))
        session.add(OutboxMessage(kind="fhir-writeback", target="B82002", dedup_key="WB-RETRY", body="{}"))
        org = session.get(Organisation, "B82002")
        org.fhir_endpoint = "http://127.0.0.1:9/fhir"
        session.add(org)
    run_once(engine, settings)
    assert count("dead-lettered") == before["dead-lettered"] + 1
    assert count("retried") == before["retried"] + 1
    assert count("succeeded") == before["succeeded"]
    exposed = generate_latest(registry_for(engine)).decode()
    assert 'spgw_outbox_depth{status="dead",target="A81001"} 1.0' in exposed
    assert 'spgw_outbox_depth{status="pending",target="B82002"} 1.0' in exposed
    assert 'spgw_outbox_oldest_pending_age_seconds{target="B82002"}' in exposed
