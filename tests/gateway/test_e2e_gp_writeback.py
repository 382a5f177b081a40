"""Outcomes to the GP record, end to end with real servers on 127.0.0.1.

The real gateway runs under uvicorn in a thread over a temp data folder (SQLite, and a throwaway
PostgreSQL when the server binaries are present); the delivery worker runs beside it; a GP FHIR
endpoint simulator (tests/gateway/gp_fhir_simulator.py) stands in for the practice's system.
Every caller gets its token from the real /oauth2/token route with the demo private keys.

An admin registers A81001's fhir_endpoint, the GP refers, the VCSE host accepts and submits
outcomes, and the GP endpoint receives a valid FHIR transaction Bundle whose Observations are
about the right patient (NHS number) and ServiceRequest, while nothing the VCSE sent or received
carried the NHS number. A lost answer is resent, and the resend creates nothing.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation

from gateway.auth.client_side import fetch_token
from gateway.delivery.worker import WorkerThread
from gateway.demo import key_path, seed_directory
from gateway.settings import Settings
from tests.gateway.gp_fhir_simulator import GpFhirSimulator
from tests.profiles.gp_message import referral_bundle

pytestmark = pytest.mark.e2e

FHIR_JSON = "application/fhir+json"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
SUBMISSION_ID = "https://sp-gateway.dev/fhir/Id/outcome-submission"
GP, HOST = "A81001", "8VC01"
GP_REFERRALS = "https://gp.example.nhs.uk/referrals"  # the identifier system tests/profiles/gp_message.py uses
NHS = "9990001006"
WAIT = 30.0  # seconds: the worker polls every 0.1 s, so a healthy run needs well under one

BASELINE: dict[str, Any] = {
    "submission_id": "sub-001",
    "recorded_at": "2026-12-01T10:00:00Z",
    "stage": "baseline",
    "ons4": {"life_satisfaction": 4, "worthwhile": 5, "happiness": 3, "anxiety": 7},
    "swemwbs": {"items": [2, 3, 2, 3, 3, 2, 3]},
    "pam": {"level": 2, "score": 51.0},
}
FINAL: dict[str, Any] = {
    "submission_id": "sub-002",
    "recorded_at": "2027-03-01T10:00:00Z",
    "stage": "final",
    "swemwbs": {"items": [4, 4, 3, 4, 4, 4, 4]},
}


@dataclass
class Gateway:
    """The running gateway and what the test needs to talk to it."""

    base_url: str
    settings: Settings
    http: httpx.Client
    tokens: dict[str, str] = field(default_factory=dict)
    vcse_exchanges: list[tuple[str, str]] = field(default_factory=list)  # (request, response) as text

    def headers(self, client_id: str) -> dict[str, str]:
        if client_id not in self.tokens:
            self.tokens[client_id] = fetch_token(
                base_url=self.base_url,
                client_id=client_id,
                private_key_path=key_path(self.settings, client_id),
                http=self.http,
            )
        return {"Authorization": f"Bearer {self.tokens[client_id]}"}

    def vcse(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """A call by demo-vcse, kept so the test can show the NHS number never crossed to the VCSE side."""
        response = self.http.request(method, self.base_url + path, json=body, headers=self.headers("demo-vcse"))
        request = response.request
        self.vcse_exchanges.append(
            (f"{request.method} {request.url}\n{request.headers}\n{request.content!r}", response.text)
        )
        return response


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="spgw-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("the gateway did not start under uvicorn")
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture
def gateway(settings: Settings, engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    from gateway.app import create_app

    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # http:// token endpoint, loopback only
    # Quick retries, so a redelivery after a lost answer happens within the test's wait.
    fast = Settings(
        data_dir=settings.data_dir,
        database_url=settings.database_url,
        delivery_backoff_base=0.05,
        delivery_backoff_cap=0.2,
    )
    app = create_app(fast, engine)
    seed_directory(engine, fast)
    server, thread, base_url = _serve(app)
    worker = WorkerThread(engine, fast, interval=0.1)
    worker.start()
    with httpx.Client(timeout=30.0) as http:
        try:
            yield Gateway(base_url, fast, http)
        finally:
            worker.stop()
            worker.join(timeout=10)
            server.should_exit = True
            thread.join(timeout=10)


def register_gp_endpoint(gw: Gateway, url: str) -> None:
    response = gw.http.put(
        f"{gw.base_url}/admin/v1/organisations/{GP}",
        json={"name": "Riverside Surgery (demo)", "kind": "gp-practice", "fhir_endpoint": url},
        headers=gw.headers("demo-admin"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["fhir_endpoint"] == url


def refer_and_accept(gw: Gateway, nhs: str, ref_id: str) -> tuple[str, str, str]:
    """Returns (referral id, ServiceRequest id, Patient id) once the GP referred and the VCSE host accepted."""
    bundle = referral_bundle(nhs, GP, vcse_id=HOST, ref_id=ref_id, consent_to=[HOST])
    sent = gw.http.post(
        f"{gw.base_url}/fhir/$process-message",
        json=bundle,
        headers={
            **gw.headers("demo-gp"),
            "Content-Type": FHIR_JSON,
            "X-Request-ID": str(uuid.uuid4()),
            "X-Correlation-ID": str(uuid.uuid4()),
        },
    )
    assert sent.status_code == 200, sent.text
    stored = {e["resource"]["resourceType"]: e["resource"] for e in sent.json()["entry"]}
    listed = gw.vcse("GET", "/vcse/v1/referrals?status=new")
    assert listed.status_code == 200, listed.text
    referral_id = stored["Task"]["identifier"][0]["value"]
    assert referral_id in [r["referral_id"] for r in listed.json()["referrals"]]
    accepted = gw.vcse("POST", f"/vcse/v1/referrals/{referral_id}/status", {"status": "accepted"})
    assert accepted.status_code == 200, accepted.text
    return referral_id, stored["ServiceRequest"]["id"], stored["Patient"]["id"]


def writeback_rows(gw: Gateway) -> list[dict[str, Any]]:
    response = gw.http.get(f"{gw.base_url}/admin/v1/outbox", headers=gw.headers("demo-admin"))
    assert response.status_code == 200, response.text
    return [r for r in response.json()["deliveries"] if r["kind"] == "fhir-writeback"]


def assert_no_nhs_number_on_the_vcse_side(gw: Gateway, nhs: str) -> None:
    assert gw.vcse_exchanges
    for request, answer in gw.vcse_exchanges:
        assert nhs not in request, request
        assert nhs not in answer, answer


def test_vcse_outcomes_reach_the_gp_endpoint_as_a_valid_transaction_about_the_right_patient(gateway) -> None:
    with GpFhirSimulator() as gp_system:
        register_gp_endpoint(gateway, gp_system.url)
        referral_id, _, _ = refer_and_accept(gateway, NHS, "E2E-WB-1")

        submitted = gateway.vcse("POST", f"/vcse/v1/referrals/{referral_id}/outcomes", BASELINE)
        assert submitted.status_code == 201, submitted.text
        gp_system.wait_for(lambda: len(gp_system.transactions()) >= 1, timeout=WAIT, what="the write-back")

        (received,) = gp_system.transactions()
        assert received.status == 200, gp_system.state.errors
        assert received.headers.get("Content-Type") == FHIR_JSON
        Bundle.model_validate_json(received.raw)
        bundle = received.bundle
        assert bundle["type"] == "transaction"
        assert len(bundle["entry"]) == 3 == len(received.created)
        for entry in bundle["entry"]:
            obs = entry["resource"]
            Observation.model_validate(obs)
            assert obs["status"] == "final"
            assert obs["subject"]["identifier"] == {"system": NHS_SYSTEM, "value": NHS}
            # the GP system knows nothing of the gateway's ids: the patient by NHS number, the
            # referral by the GP's own ServiceRequest identifier
            assert "reference" not in obs["subject"]
            assert obs["basedOn"] == [
                {"type": "ServiceRequest", "identifier": {"system": GP_REFERRALS, "value": "E2E-WB-1"}}
            ]
            ident = obs["identifier"][0]
            # unique across referrals: a submission_id is an idempotency key per referral only
            assert ident["system"] == SUBMISSION_ID and ident["value"].startswith(f"{referral_id}/sub-001/")
            assert entry["request"] == {
                "method": "POST",
                "url": "Observation",
                "ifNoneExist": f"identifier={ident['system']}|{ident['value']}",
            }
        assert len(gp_system.observations()) == 3
        gp_system.wait_for(
            lambda: [r["status"] for r in writeback_rows(gateway)] == ["delivered"],
            timeout=WAIT,
            what="the outbox row to be marked delivered",
        )
    assert_no_nhs_number_on_the_vcse_side(gateway, NHS)


def test_a_lost_gp_answer_is_resent_and_the_resend_creates_nothing(gateway) -> None:
    with GpFhirSimulator(lose_responses=1) as gp_system:
        register_gp_endpoint(gateway, gp_system.url)
        referral_id, _, _ = refer_and_accept(gateway, NHS, "E2E-WB-LOST")

        assert gateway.vcse("POST", f"/vcse/v1/referrals/{referral_id}/outcomes", BASELINE).status_code == 201
        gp_system.wait_for(lambda: len(gp_system.transactions()) >= 2, timeout=WAIT, what="the redelivery")
        gp_system.wait_for(
            lambda: [r["status"] for r in writeback_rows(gateway)] == ["delivered"],
            timeout=WAIT,
            what="the outbox row to be marked delivered",
        )

        first, second = gp_system.transactions()[:2]
        assert (first.status, second.status) == (503, 200)
        assert second.raw == first.raw  # the same Bundle, byte for byte
        assert (len(first.created), len(second.created)) == (3, 0)
        assert sorted(second.matched) == sorted(first.created)
        assert len(gp_system.observations()) == 3
        (row,) = writeback_rows(gateway)
        assert row["attempts"] == 2
    assert_no_nhs_number_on_the_vcse_side(gateway, NHS)


def test_a_retried_submission_sends_nothing_more_and_a_final_one_sends_distance_travelled(gateway) -> None:
    with GpFhirSimulator() as gp_system:
        register_gp_endpoint(gateway, gp_system.url)
        referral_id, _, _ = refer_and_accept(gateway, NHS, "E2E-WB-FINAL")
        url = f"/vcse/v1/referrals/{referral_id}/outcomes"

        assert gateway.vcse("POST", url, BASELINE).status_code == 201
        assert gateway.vcse("POST", url, BASELINE).status_code == 200  # a retry: nothing new is queued
        assert gateway.vcse("POST", url, FINAL).status_code == 201
        gp_system.wait_for(lambda: len(gp_system.transactions()) >= 2, timeout=WAIT, what="both write-backs")
        gp_system.wait_for(
            lambda: [r["status"] for r in writeback_rows(gateway)] == ["delivered", "delivered"],
            timeout=WAIT,
            what="both outbox rows to be marked delivered",
        )

        assert len(gp_system.transactions()) == 2
        final = gp_system.transactions()[1].bundle
        derived = [e["resource"] for e in final["entry"] if "derivedFrom" in e["resource"]]
        assert len(derived) == 1  # only SWEMWBS is in both submissions
        assert derived[0]["subject"]["identifier"] == {"system": NHS_SYSTEM, "value": NHS}
        assert derived[0]["basedOn"] == [
            {"type": "ServiceRequest", "identifier": {"system": GP_REFERRALS, "value": "E2E-WB-FINAL"}}
        ]
        sources = derived[0]["derivedFrom"]
        in_bundle = {e["fullUrl"] for e in final["entry"]}
        # the final measure is an entry of the same Bundle; the baseline went in the first one,
        # so it is named by its identifier
        assert [s["reference"] in in_bundle for s in sources if "reference" in s] == [True]
        assert [s["identifier"]["value"].endswith("/swemwbs") for s in sources if "identifier" in s] == [True]
        assert len(sources) == 2
        assert len(gp_system.observations()) == 3 + 1 + 1
    assert_no_nhs_number_on_the_vcse_side(gateway, NHS)
