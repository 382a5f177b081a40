"""Write-backs and their audit (issue 10 item 3), through HTTP and the delivery worker, on both backends:
outcome identifiers are unique per referral (two referrals may both send submission_id crm-0001),
every send is recorded in the audit before it leaves, and one row whose record fails neither stays
pending to be re-sent every lease nor blocks the rows leased with it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
from sqlmodel import Session, select

from audit.store import AuditEntry
from gateway.db import transaction
from gateway.delivery import worker
from gateway.models import OutboxMessage
from tests.gateway.test_api_outcomes import BASELINE
from tests.gateway.test_consent_flow import (
    FHIR_JSON,
    host_referrals,
    nhs_number,
    put_agreement,
    referral_id_of,
    referral_message,
    task_for,
)

GP = "A81001"
GP_ENDPOINT = "http://gp-system.invalid/fhir"


class Receiver:
    """The GP system's FHIR endpoint and a CRM webhook, in process: answers 200, keeps what it got."""

    def __init__(self) -> None:
        self.got: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.got.append(request)
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response", "entry": []})


def run_worker(app, settings, receiver: Receiver) -> None:
    with httpx.Client(transport=httpx.MockTransport(receiver)) as http:
        worker.run_once(app.state.spgw.engine, settings, http)


def accepted_referral(client, token_for, nhs: str) -> str:
    response = client.post(
        "/fhir/$process-message",
        json=referral_message(nhs, "8VC01", consent_for=("8VC01",)),
        headers=token_for("demo-gp", **FHIR_JSON),
    )
    assert response.status_code == 200, response.text
    sr = next(e["resource"] for e in response.json()["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    referral_id = referral_id_of(task_for(client, token_for, sr["id"]))
    moved = client.post(
        f"/vcse/v1/referrals/{referral_id}/status", json={"status": "accepted"}, headers=token_for("demo-vcse")
    )
    assert moved.status_code == 200, moved.text
    return referral_id


def register_gp_endpoint(client, token_for) -> None:
    response = client.put(
        f"/admin/v1/organisations/{GP}",
        json={"name": "Riverside Surgery", "kind": "gp-practice", "fhir_endpoint": GP_ENDPOINT},
        headers=token_for("demo-admin"),
    )
    assert response.status_code == 200, response.text


def audit_rows(app) -> list[dict[str, Any]]:
    with Session(app.state.spgw.engine) as session:
        return [orjson.loads(e.content) for e in session.exec(select(AuditEntry).order_by(AuditEntry.seq))]


def descriptions(app) -> list[str]:
    return [orjson.dumps(e).decode() for e in audit_rows(app)]


def test_write_backs_sharing_a_submission_id_are_each_delivered_and_disclosed(app, client, token_for, settings):
    register_gp_endpoint(client, token_for)
    nhss = [nhs_number(8400), nhs_number(8500)]
    referral_ids = [accepted_referral(client, token_for, nhs) for nhs in nhss]
    for referral_id in referral_ids:
        answer = client.post(
            f"/vcse/v1/referrals/{referral_id}/outcomes",
            json={**BASELINE, "submission_id": "crm-0001"},
            headers=token_for("demo-vcse"),
        )
        assert answer.status_code == 201, answer.text

    receiver = Receiver()
    run_worker(app, settings, receiver)

    bundles = [orjson.loads(r.content) for r in receiver.got if str(r.url) == GP_ENDPOINT]
    assert sorted(b["entry"][0]["resource"]["subject"]["identifier"]["value"] for b in bundles) == sorted(nhss)
    identifiers = [e["resource"]["identifier"][0]["value"] for b in bundles for e in b["entry"]]
    assert len(identifiers) == len(set(identifiers))  # unique across the two referrals
    assert {i.split("/")[0] for i in identifiers} == set(referral_ids)
    with Session(app.state.spgw.engine) as session:
        rows = session.exec(select(OutboxMessage).where(OutboxMessage.kind == "fhir-writeback")).all()
    assert [(r.status, r.attempts) for r in rows] == [("delivered", 1), ("delivered", 1)]
    for nhs in nhss:
        report = client.get(f"/ig/v1/patients/{nhs}/disclosures", headers=token_for("demo-ig"))
        assert report.status_code == 200, report.text
        written_back = [d for d in report.json()["disclosures"] if d["recipient_org"] == GP]
        assert len(written_back) == 1, report.text
        assert written_back[0]["referral"].startswith("ServiceRequest/")
    # BaRS trace ids: UUIDs, one pair per write-back, the same on every retry of it
    request_ids = [r.headers["X-Request-ID"] for r in receiver.got if str(r.url) == GP_ENDPOINT]
    assert len(set(request_ids)) == 2 and all(str(uuid.UUID(i)) == i for i in request_ids)
    assert set(request_ids) == {worker.writeback_trace_ids(r.dedup_key)["X-Request-ID"] for r in rows}
    # each send was recorded before it left
    attempts = [d for d in descriptions(app) if "outcome unknown until recorded" in d and "wb-out-" in d]
    assert len(attempts) == 2


def test_a_row_whose_record_fails_is_closed_audited_and_blocks_nothing(app, client, token_for, settings):
    put_agreement(client, token_for, "8VC01", delivery_mode="webhook", webhook_url="http://crm.invalid/hook")
    register_gp_endpoint(client, token_for)
    # A write-back row whose Bundle names nobody (queued by an older version, say): the receiver takes
    # it, but its disclosure record cannot be built. It is leased first, in the same batch as a packet.
    with transaction(app.state.spgw.engine) as session:
        session.add(
            OutboxMessage(
                kind="fhir-writeback",
                target=GP,
                dedup_key="wb-broken",
                body=orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": []}).decode(),
                content_type="application/fhir+json",
            )
        )
    referral_id = accepted_referral(client, token_for, nhs_number(8600))
    packet_id = host_referrals(client, token_for)[referral_id]["packet_id"]

    receiver = Receiver()
    run_worker(app, settings, receiver)

    assert [str(r.url) for r in receiver.got] == [GP_ENDPOINT, "http://crm.invalid/hook"]
    with Session(app.state.spgw.engine) as session:
        rows = {r.dedup_key: r for r in session.exec(select(OutboxMessage))}
    assert rows[packet_id].status == "delivered"
    broken = rows["wb-broken"]
    assert (broken.status, broken.attempts) == ("delivered", 1)
    assert "disclosure record failed" in (broken.last_error or "")
    text = " ".join(descriptions(app))
    assert "wb-broken sending to A81001" in text and "outcome unknown until recorded" in text
    assert "wb-broken to A81001: delivered; recording it in full failed" in text
    # nothing is left to re-send: a second run sends nothing
    again = Receiver()
    run_worker(app, settings, again)
    assert again.got == []
