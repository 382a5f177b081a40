"""Tenancy at the seams (issue 10 items 1, 4 and 19), through HTTP on SQLite and PostgreSQL:

- another practice's Consents for the same person neither end nor change a practice's referral;
- a withdrawal reaches a referral its host already completed (cease notice; later outcomes and status 409);
- a VCSE host sees nothing of a referral (its Task included) until a packet is issued to it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, select

from gateway.models import FhirResource, Packet
from profiles import systems
from tests.gateway.test_consent_flow import (
    FHIR_JSON,
    consent,
    host_referrals,
    nhs_number,
    notices,
    referral_id_of,
    referral_message,
    task_for,
)

GP_A, GP_B = "A81001", "B82002"
OUTCOME = {
    "submission_id": "after-withdrawal",
    "stage": "final",
    "recorded_at": "2026-11-24T10:00:00Z",
    "ons4": {"life_satisfaction": 7, "worthwhile": 7, "happiness": 6, "anxiety": 3},
}


def message_from(gp_ods: str, nhs: str, host: str | None, consent_for: tuple[str, ...] | None) -> dict[str, Any]:
    """A referral message from practice `gp_ods` (the shared builder speaks for A81001)."""
    message = referral_message(nhs, host or "8VC01", consent_for=consent_for)
    if host is None:
        message["entry"][1]["resource"].pop("performer")
    return json.loads(json.dumps(message).replace(GP_A, gp_ods))


def refer(client, token_for, gp: str, message: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/fhir/$process-message", json=message, headers=token_for(gp, **FHIR_JSON))
    assert response.status_code == 200, response.text
    return {e["resource"]["resourceType"]: e["resource"] for e in response.json()["entry"]}


def task_of(client, token_for, gp: str, service_request_id: str) -> dict[str, Any]:
    response = client.get(f"/fhir/Task?focus=ServiceRequest/{service_request_id}", headers=token_for(gp))
    assert response.status_code == 200, response.text
    [task] = [e["resource"] for e in response.json()["entry"]]
    return task


def packet_rows(app, referral_id: str) -> list[tuple[str, str]]:
    with Session(app.state.spgw.engine) as session:
        rows = session.exec(select(Packet).where(Packet.referral_id == referral_id)).all()
    return sorted((p.kind, p.status) for p in rows)


def test_another_practices_consent_flood_leaves_a_referral_alone(app, client, token_for) -> None:
    nhs = nhs_number(8100)
    victim = refer(client, token_for, "demo-gp-b", message_from(GP_B, nhs, "8VC01", ("8VC01",)))
    refer(client, token_for, "demo-gp", message_from(GP_A, nhs, None, None))
    task = task_of(client, token_for, "demo-gp-b", victim["ServiceRequest"]["id"])
    referral_id = referral_id_of(task)
    before = client.get(f"/vcse/v1/referrals/{referral_id}", headers=token_for("demo-vcse")).json()
    assert before["status"] == "new" and before["person"]["first_name"] == "Ada"

    # Practice A floods 500 Consents for the same person (a deny for the same host, newest last).
    deny = consent(nhs, "8VC01")
    deny["dateTime"] = "2026-11-21T10:00:00+00:00"
    deny["policyRule"] = {"coding": [{"system": systems.V3_ACT_CODE, "code": "OPTOUT"}]}
    deny["provision"]["type"] = "deny"
    for _ in range(500):
        response = client.post("/fhir/Consent", json=deny, headers=token_for("demo-gp", **FHIR_JSON))
        assert response.status_code == 201, response.text
    with Session(app.state.spgw.engine) as session:
        flood = session.exec(
            select(FhirResource.pk).where(FhirResource.resource_type == "Consent", FhirResource.tenant == GP_A)
        ).all()
    assert len(flood) == 500

    # The host reads B's referral (the read re-checks consent): unchanged, content and all.
    after = client.get(f"/vcse/v1/referrals/{referral_id}", headers=token_for("demo-vcse"))
    assert after.status_code == 200
    assert after.json() == before | {"status": "new"}
    assert host_referrals(client, token_for)[referral_id]["person"]["first_name"] == "Ada"
    assert task_of(client, token_for, "demo-gp-b", victim["ServiceRequest"]["id"]) == task
    assert packet_rows(app, referral_id) == [("referral", "new")]
    assert [n for n in notices(client, token_for) if n["referral_id"] == referral_id] == []
    # and B's own host can still move it along
    accepted = client.post(
        f"/vcse/v1/referrals/{referral_id}/status", json={"status": "accepted"}, headers=token_for("demo-vcse")
    )
    assert accepted.status_code == 200, accepted.text


def test_withdrawal_reaches_a_completed_referral(app, client, token_for) -> None:
    nhs = nhs_number(8200)
    stored = refer(client, token_for, "demo-gp", message_from(GP_A, nhs, "8VC01", ("8VC01",)))
    referral_id = referral_id_of(task_for(client, token_for, stored["ServiceRequest"]["id"]))
    host = token_for("demo-vcse")
    for status in ("accepted", "completed"):
        moved = client.post(f"/vcse/v1/referrals/{referral_id}/status", json={"status": status}, headers=host)
        assert moved.status_code == 200, moved.text

    deny = consent(nhs, "8VC01")
    deny["dateTime"] = "2026-11-21T10:00:00+00:00"
    deny["policyRule"] = {"coding": [{"system": systems.V3_ACT_CODE, "code": "OPTOUT"}]}
    deny["provision"]["type"] = "deny"
    response = client.post("/fhir/Consent", json=deny, headers=token_for("demo-gp", **FHIR_JSON))
    assert response.status_code == 201, response.text

    [notice] = [n for n in notices(client, token_for) if n["referral_id"] == referral_id]
    assert notice["kind"] == "cease" and notice["reason"] == "consent-withdrawn"
    assert packet_rows(app, referral_id) == [("cease", "new"), ("referral", "ceased")]
    outcome = client.post(f"/vcse/v1/referrals/{referral_id}/outcomes", json=OUTCOME, headers=token_for("demo-vcse"))
    assert outcome.status_code == 409, outcome.text
    assert outcome.json()["issue"][0]["code"] == "business-rule"
    status = client.post(
        f"/vcse/v1/referrals/{referral_id}/status", json={"status": "in-progress"}, headers=token_for("demo-vcse")
    )
    assert status.status_code == 409, status.text
    # the completed Task stays completed (FHIR's Task state machine lets nothing follow it)
    assert task_for(client, token_for, stored["ServiceRequest"]["id"])["status"] == "completed"


def test_a_host_sees_no_task_until_a_packet_is_issued_to_it(client, token_for) -> None:
    nhs = nhs_number(8300)
    stored = refer(client, token_for, "demo-gp", message_from(GP_A, nhs, "8VC01", None))
    task = task_for(client, token_for, stored["ServiceRequest"]["id"])
    assert task["status"] == "on-hold"
    host = token_for("demo-vcse")

    for path in (f"/fhir/Task/{task['id']}", f"/fhir/Task/{task['id']}/_history/1"):
        response = client.get(path, headers=host)
        assert response.status_code == 404, path
    for params in ({}, {"focus": f"ServiceRequest/{stored['ServiceRequest']['id']}"}, {"status": "on-hold"}):
        listed = client.get("/fhir/Task", params=params, headers=host)
        assert listed.status_code == 200 and listed.json().get("entry", []) == [], params
        assert referral_id_of(task) not in listed.text and GP_A not in listed.text
    assert referral_id_of(task) not in host_referrals(client, token_for)

    # consent arrives, the packet is issued: now the host sees the Task
    given = client.post("/fhir/Consent", json=consent(nhs, "8VC01"), headers=token_for("demo-gp", **FHIR_JSON))
    assert given.status_code == 201, given.text
    assert client.get(f"/fhir/Task/{task['id']}", headers=host).status_code == 200
    listed = client.get("/fhir/Task", headers=host).json()
    assert task["id"] in [e["resource"]["id"] for e in listed["entry"]]
