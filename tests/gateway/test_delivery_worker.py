"""The delivery worker against a mocked VCSE CRM (respx): signatures, retries with backoff, dead
letters an admin can see and requeue, and the consent re-check at the moment of sending.

The worker functions are driven directly with an httpx.Client under
`respx.mock(assert_all_called=True, assert_all_mocked=True)`, so any unexpected outbound call
fails the test. Time is moved, not waited for: between runs the row's next_attempt_at is set to
the past. Runs on SQLite and on a throwaway PostgreSQL.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session, select

from gateway.cli import main as spgw
from gateway.context import RequestContext
from gateway.db import transaction
from gateway.delivery import worker
from gateway.delivery.signing import PACKET_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from gateway.models import OutboxMessage, Packet, utc
from gateway.settings import Settings
from tests.gateway.test_consent_flow import (
    FHIR_JSON,
    consent,
    consents_of,
    nhs_number,
    post_referral,
    put_agreement,
    referral_id_of,
    referral_message,
    task_for,
)

WEBHOOK = "https://crm.example.org/spgw/webhook"


@dataclass
class Queued:
    secret: str
    nhs: str
    packet_id: str
    referral_id: str
    patient_id: str


def _row(engine: Engine, dedup_key: str) -> OutboxMessage:
    with Session(engine) as session:
        row = session.exec(select(OutboxMessage).where(OutboxMessage.dedup_key == dedup_key)).one()
        session.expunge(row)
        return row


def _make_due(engine: Engine, dedup_key: str) -> None:
    """Moves time instead of waiting: the retry is due now."""
    with transaction(engine) as session:
        row = session.exec(select(OutboxMessage).where(OutboxMessage.dedup_key == dedup_key)).one()
        row.next_attempt_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)


def _queue(client, token_for, seed: int, **message: Any) -> Queued:
    """Registers 8VC01 as a webhook host (once) and posts a consented referral for it."""
    answer = put_agreement(client, token_for, "8VC01", delivery_mode="webhook", webhook_url=WEBHOOK)
    nhs = nhs_number(seed)
    stored = post_referral(client, token_for, referral_message(nhs, "8VC01", consent_for=("8VC01",), **message))
    referral_id = referral_id_of(task_for(client, token_for, stored["ServiceRequest"]["id"]))
    return Queued(answer.get("webhook_secret", ""), nhs, "", referral_id, stored["Patient"]["id"])


@pytest.fixture
def queued(client, token_for, engine) -> Queued:
    item = _queue(client, token_for, 2000)
    with Session(engine) as session:
        [row] = session.exec(select(OutboxMessage)).all()
    assert row.kind == "referral" and row.status == "pending" and row.target == "8VC01"
    item.packet_id = row.dedup_key
    return item


def test_webhook_is_signed_over_the_exact_body_and_carries_no_nhs_number(queued, engine, settings) -> None:
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        route = mock.post(WEBHOOK).mock(return_value=httpx.Response(201))
        with httpx.Client() as http:
            assert worker.run_once(engine, settings, http) == 1

    request = route.calls.last.request
    assert route.call_count == 1
    assert verify(queued.secret, request.content, dict(request.headers))
    assert not verify(queued.secret, request.content + b" ", dict(request.headers))
    assert not verify("whsec_someone-else", request.content, dict(request.headers))
    assert request.headers[PACKET_ID_HEADER] == queued.packet_id
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers[SIGNATURE_HEADER].startswith("v1=")
    assert abs(int(request.headers[TIMESTAMP_HEADER]) - datetime.now(UTC).timestamp()) < 120
    body = json.loads(request.content)
    assert body["packet_id"] == queued.packet_id and body["referral_id"] == queued.referral_id
    assert body["kind"] == "referral" and body["person"]["first_name"] == "Ada"
    assert queued.nhs not in request.content.decode()
    assert "nhs_number" not in body["person"] and "date_of_birth" not in body["person"]
    row = _row(engine, queued.packet_id)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
    assert row.delivered_at is not None


def test_retries_with_growing_backoff_until_delivered(queued, engine, settings) -> None:
    base = settings.delivery_backoff_base
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        route = mock.post(WEBHOOK).mock(
            side_effect=[httpx.Response(503), httpx.ConnectTimeout("no answer"), httpx.Response(201)]
        )
        delays: list[tuple[float, float]] = []
        with httpx.Client() as http:
            for attempt in (1, 2):
                before = datetime.now(UTC)
                assert worker.run_once(engine, settings, http) == 0
                after = datetime.now(UTC)
                row = _row(engine, queued.packet_id)
                assert (row.status, row.attempts) == ("pending", attempt)
                next_at = utc(row.next_attempt_at)
                assert next_at is not None
                # The worker picked its delay d at an instant between before and after.
                delays.append(((next_at - after).total_seconds(), (next_at - before).total_seconds()))
                assert worker.run_once(engine, settings, http) == 0, "not due yet: nothing is sent"
                _make_due(engine, queued.packet_id)
            assert worker.run_once(engine, settings, http) == 1

    assert route.call_count == 3
    (low1, high1), (low2, high2) = delays
    # Equal jitter: attempt n waits between delay/2 and delay, delay = base * 2^(n-1).
    assert base / 2 - 0.01 <= high1 and low1 <= base + 0.01
    assert base - 0.01 <= high2 and low2 <= 2 * base + 0.01
    assert high2 >= low1  # the second wait is never shorter than the first
    row = _row(engine, queued.packet_id)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 3, None)
    errors = [call.response.status_code if call.has_response else "timeout" for call in route.calls]
    assert errors == [503, "timeout", 201]


def test_http_400_is_dead_lettered_at_once(queued, engine, settings) -> None:
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        route = mock.post(WEBHOOK).mock(return_value=httpx.Response(400, json={"error": "bad packet"}))
        with httpx.Client() as http:
            assert worker.run_once(engine, settings, http) == 0
            _make_due(engine, queued.packet_id)
            assert worker.run_once(engine, settings, http) == 0

    assert route.call_count == 1
    row = _row(engine, queued.packet_id)
    assert (row.status, row.attempts) == ("dead", 1)
    assert "HTTP 400" in (row.last_error or "")


def test_max_attempts_dead_letters_visible_to_admin_and_cli_then_retry_requeues(
    queued, engine, settings, client, token_for, monkeypatch
) -> None:
    limited = settings.model_copy(update={"delivery_max_attempts": 3})
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        route = mock.post(WEBHOOK).mock(return_value=httpx.Response(503))
        with httpx.Client() as http:
            for _ in range(5):
                worker.run_once(engine, limited, http)
                _make_due(engine, queued.packet_id)
    assert route.call_count == 3
    row = _row(engine, queued.packet_id)
    assert (row.status, row.attempts) == ("dead", 3)
    assert "HTTP 503" in (row.last_error or "")

    answer = client.get("/admin/v1/outbox?status=dead", headers=token_for("demo-admin"))
    assert answer.status_code == 200, answer.text
    [dead] = answer.json()["deliveries"]
    assert (dead["message_id"], dead["status"], dead["attempts"], dead["target"]) == (
        queued.packet_id,
        "dead",
        3,
        "8VC01",
    )
    assert "body" not in dead
    assert client.get("/admin/v1/outbox?status=dead", headers=token_for("demo-vcse")).status_code == 403

    env = {"SPGW_DATA_DIR": str(settings.data_dir), "SPGW_DATABASE_URL": settings.database_url or ""}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    listed = runner.invoke(spgw, ["outbox", "list", "--status", "dead", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert [(r["message_id"], r["status"]) for r in json.loads(listed.output)] == [(queued.packet_id, "dead")]
    plain = runner.invoke(spgw, ["outbox", "list", "--status", "dead"], env=env)
    assert plain.exit_code == 0 and "dead" in plain.output and "HTTP 503" in plain.output
    assert queued.nhs not in plain.output + listed.output

    requeued = runner.invoke(spgw, ["outbox", "retry", str(dead["id"])], env=env)
    assert requeued.exit_code == 0 and requeued.output.strip() == "requeued 1"
    row = _row(engine, queued.packet_id)
    assert (row.status, row.attempts) == ("pending", 0)
    assert runner.invoke(spgw, ["outbox", "list", "--status", "dead", "--json"], env=env).output.strip() == "[]"

    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        mock.post(WEBHOOK).mock(return_value=httpx.Response(202))
        with httpx.Client() as http:
            assert worker.run_once(engine, settings, http) == 1
    assert _row(engine, queued.packet_id).status == "delivered"


def test_admin_retry_route_requeues_dead_letters(queued, engine, settings, client, token_for) -> None:
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        mock.post(WEBHOOK).mock(return_value=httpx.Response(410))
        with httpx.Client() as http:
            worker.run_once(engine, settings, http)
    assert _row(engine, queued.packet_id).status == "dead"
    answer = client.post("/admin/v1/outbox/retry", json={}, headers=token_for("demo-admin"))
    assert answer.status_code == 200 and answer.json() == {"requeued": 1}
    assert _row(engine, queued.packet_id).status == "pending"


@pytest.mark.parametrize("attempts", [1, 2, 3, 5, 8, 12, 40])
def test_backoff_is_equal_jitter_between_half_and_full_delay_capped(attempts: int) -> None:
    settings = Settings(delivery_backoff_base=2.0, delivery_backoff_cap=60.0)
    delay = min(60.0, 2.0 * 2 ** (attempts - 1))
    assert worker.backoff(attempts, settings, rng=lambda low, high: low) == delay / 2
    assert worker.backoff(attempts, settings, rng=lambda low, high: high) == delay
    for _ in range(200):
        assert delay / 2 <= worker.backoff(attempts, settings) <= delay <= 60.0


def test_backoff_never_exceeds_the_cap_and_starts_at_the_base() -> None:
    settings = Settings(delivery_backoff_base=2.0, delivery_backoff_cap=3600.0)
    assert worker.backoff(0, settings, rng=lambda low, high: high) == 2.0
    assert worker.backoff(1, settings, rng=lambda low, high: high) == 2.0
    assert worker.backoff(1000, settings, rng=lambda low, high: high) == 3600.0
    assert worker.backoff(1000, settings, rng=lambda low, high: low) == 1800.0


def test_packet_whose_consent_was_withdrawn_after_queueing_is_not_sent(
    queued, engine, settings, client, token_for
) -> None:
    """Withdrawal through the API: the referral row is closed `withdrawn`; only the cease notice goes."""
    [given] = consents_of(client, token_for, queued.patient_id)
    body = {k: v for k, v in given.items() if k != "meta"} | {"status": "inactive"}
    answer = client.put(f"/fhir/Consent/{given['id']}", json=body, headers=token_for("demo-gp", **FHIR_JSON))
    assert answer.status_code == 200, answer.text

    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        route = mock.post(WEBHOOK).mock(return_value=httpx.Response(200))
        with httpx.Client() as http:
            worker.run_once(engine, settings, http)

    sent = [json.loads(call.request.content) for call in route.calls]
    assert [s["kind"] for s in sent] == ["cease"]
    assert all(queued.packet_id not in call.request.headers[PACKET_ID_HEADER] for call in route.calls)
    assert "person" not in sent[0]
    row = _row(engine, queued.packet_id)
    assert row.status == "withdrawn"
    assert "ceased" in (row.last_error or "")


def test_packet_whose_consent_expired_after_queueing_is_not_sent(
    client, token_for, engine, settings, monkeypatch
) -> None:
    """Expiry (provision.period.end) needs no API call: the worker's own check at sending time stops it."""
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="seconds")
    item = _queue(client, token_for, 2100, provision={"period": {"end": tomorrow}})
    with Session(engine) as session:
        [row] = session.exec(select(OutboxMessage)).all()

    class TwoDaysLater(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
            return datetime.now(tz) + timedelta(days=2)

    monkeypatch.setattr(worker, "datetime", TwoDaysLater)
    monkeypatch.setattr(RequestContext, "now", staticmethod(lambda: datetime.now(UTC) + timedelta(days=2)))
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        route = mock.post(WEBHOOK).mock(return_value=httpx.Response(200))
        with httpx.Client() as http:
            assert worker.run_once(engine, settings, http) == 0
    assert not route.called
    closed = _row(engine, row.dedup_key)
    assert closed.status == "withdrawn" and "not in force" in (closed.last_error or "")
    assert item.nhs not in (closed.last_error or "")
    # the referral is reconsidered at once: packet ceased, Task cancelled, a cease notice queued
    with Session(engine) as session:
        packets = {p.kind: p.status for p in session.exec(select(Packet).where(Packet.referral_id == item.referral_id))}
        queued_kinds = [r.kind for r in session.exec(select(OutboxMessage).where(OutboxMessage.status == "pending"))]
    assert packets == {"referral": "ceased", "cease": "new"}
    assert queued_kinds == ["cease"]
    with Session(engine) as session:
        [notice] = session.exec(select(Packet).where(Packet.referral_id == item.referral_id, Packet.kind == "cease"))
    assert notice.body["reason"] == "consent-expired"


def test_category_withdrawn_after_queueing_is_left_out_of_the_webhook(queued, engine, settings, client, token_for):
    """A later deny for contact details narrows the queued packet; the rest still goes, signed as sent."""
    from consent.categories import DataCategory
    from tests.gateway.test_consent_flow import category_codes

    deny = consent(queued.nhs, "8VC01", code=category_codes(DataCategory.CONTACT_DETAILS))
    deny["dateTime"] = "2026-11-21T10:00:00+00:00"
    deny["provision"]["type"] = "deny"
    answer = client.post("/fhir/Consent", json=deny, headers=token_for("demo-gp", **FHIR_JSON))
    assert answer.status_code == 201, answer.text

    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        route = mock.post(WEBHOOK).mock(return_value=httpx.Response(200))
        with httpx.Client() as http:
            assert worker.run_once(engine, settings, http) == 1
    request = route.calls.last.request
    assert route.call_count == 1
    assert verify(queued.secret, request.content, dict(request.headers))
    body = json.loads(request.content)
    assert body["packet_id"] == queued.packet_id
    assert body["referral"]["need_categories"] == ["Social isolation"]
    assert "Ada" not in request.content.decode() and "07700900000" not in request.content.decode()
    assert _disclosed_fields(engine, queued.packet_id) == sorted(
        f"{group}.{name}" for group in ("person", "referral") for name in body.get(group, {})
    )


def _disclosed_fields(engine: Engine, packet_id: str) -> list[str]:
    """Returns the fields the worker's disclosure AuditEvent (DCM 110106) lists for this packet."""
    from audit.store import AuditEntry

    with Session(engine) as session:
        contents = [
            c
            for c in session.exec(select(AuditEntry.content).where(AuditEntry.type_code == "110106"))
            if packet_id in c
        ]
    [event] = [json.loads(c) for c in contents]
    return sorted(
        d["valueString"] for e in event["entity"] for d in e.get("detail", []) if d.get("type") == "disclosed-field"
    )


def test_a_delivered_webhook_is_audited_as_a_disclosure_of_exactly_the_fields_sent(queued, engine, settings) -> None:
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        route = mock.post(WEBHOOK).mock(return_value=httpx.Response(201))
        with httpx.Client() as http:
            assert worker.run_once(engine, settings, http) == 1
    body = json.loads(route.calls.last.request.content)
    sent = sorted(f"{group}.{name}" for group in ("person", "referral") for name in body.get(group, {}))
    assert sent and _disclosed_fields(engine, queued.packet_id) == sent


def test_outcomes_written_back_to_the_gp_appear_in_the_patients_disclosure_report(
    client, token_for, engine, settings
) -> None:
    """IG rule 5: the write-back of outcomes to the referrer is a disclosure about the patient too."""
    from tests.profiles.gp_message import referral_bundle

    endpoint = "https://gp.example.nhs.uk/fhir"
    admin = client.put(
        "/admin/v1/organisations/A81001",
        headers=token_for("demo-admin"),
        json={"name": "Riverside Surgery", "kind": "gp-practice", "fhir_endpoint": endpoint},
    )
    assert admin.status_code == 200, admin.text
    nhs = nhs_number(2300)
    posted = client.post(
        "/fhir/$process-message",
        json=referral_bundle(nhs, "A81001", "8VC01", "WB-AUDIT", ["8VC01"]),
        headers=token_for("demo-gp", **FHIR_JSON),
    )
    assert posted.status_code == 200, posted.text
    [packet] = client.get("/vcse/v1/referrals", headers=token_for("demo-vcse")).json()["referrals"]
    rid = packet["referral_id"]
    assert (
        client.post(
            f"/vcse/v1/referrals/{rid}/status", json={"status": "accepted"}, headers=token_for("demo-vcse")
        ).status_code
        == 200
    )
    outcome = {
        "submission_id": "wb-1",
        "recorded_at": "2026-11-22T10:00:00Z",
        "stage": "baseline",
        "pam": {"level": 2, "score": 51.0},
    }
    assert (
        client.post(f"/vcse/v1/referrals/{rid}/outcomes", json=outcome, headers=token_for("demo-vcse")).status_code
        == 201
    )
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        mock.post(endpoint).mock(
            return_value=httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response"})
        )
        with httpx.Client() as http:
            assert worker.run_once(engine, settings, http) == 1
    report = client.get(f"/ig/v1/patients/{nhs}/disclosures", headers=token_for("demo-ig")).json()
    to_gp = [d for d in report["disclosures"] if d["recipient_org"] == "A81001"]
    assert len(to_gp) == 1 and to_gp[0]["fields"] and all("wb-1/" in f for f in to_gp[0]["fields"])


def test_after_the_admin_rotates_the_secret_webhooks_are_signed_with_the_new_one(
    queued, engine, settings, client, token_for
) -> None:
    rotated = client.post("/admin/v1/organisations/8VC01/rotate-secret", headers=token_for("demo-admin"))
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["webhook_secret"]
    assert new_secret != queued.secret
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        route = mock.post(WEBHOOK).mock(return_value=httpx.Response(201))
        with httpx.Client() as http:
            assert worker.run_once(engine, settings, http) == 1
    request = route.calls.last.request
    assert verify(new_secret, request.content, dict(request.headers))
    assert not verify(queued.secret, request.content, dict(request.headers))
    assert (
        client.post("/admin/v1/organisations/A81001/rotate-secret", headers=token_for("demo-admin")).status_code == 409
    )
    assert (
        client.post("/admin/v1/organisations/NOPE1/rotate-secret", headers=token_for("demo-admin")).status_code == 404
    )


def test_a_pull_after_the_webhook_delivered_the_same_version_is_re_access(
    queued, engine, settings, client, token_for
) -> None:
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        mock.post(WEBHOOK).mock(return_value=httpx.Response(201))
        with httpx.Client() as http:
            assert worker.run_once(engine, settings, http) == 1
    pulled = client.get(f"/vcse/v1/referrals/{queued.referral_id}", headers=token_for("demo-vcse"))
    assert pulled.status_code == 200

    report = client.get(f"/ig/v1/patients/{queued.nhs}/disclosures", headers=token_for("demo-ig")).json()
    assert [d["packet_id"] for d in report["disclosures"]] == [queued.packet_id]  # the webhook's, only
