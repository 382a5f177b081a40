"""End to end over real sockets: the gateway (uvicorn, in a thread) and a VCSE CRM simulator, both on
127.0.0.1 with ports the OS chose, and the delivery worker running in the background.

The GP gets its token with `spgw token` (a signed client assertion, RFC 7523) and posts a consented
referral; the worker pushes the signed packet to the CRM; the CRM verifies the signature, takes the
packet once, and accepts the referral through the VCSE API with its own token; the GP then sees the
Task accepted. Every wait is a poll with a deadline.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine
from sqlmodel import Session, select

from gateway.app import create_app
from gateway.auth.client_side import fetch_token
from gateway.delivery.signing import signed_headers
from gateway.delivery.worker import WorkerThread
from gateway.demo import key_path, seed_directory
from gateway.models import OutboxMessage
from gateway.settings import Settings
from tests.gateway.crm_simulator import CrmSimulator
from tests.gateway.test_consent_flow import nhs_number, referral_message

SPGW = Path(sys.executable).with_name("spgw")
WAIT = 60.0  # generous: a loaded 2-core machine


@dataclass
class Gateway:
    base_url: str
    engine: Engine
    settings: Settings


def poll(condition: Callable[[], Any], *, timeout: float = WAIT, what: str) -> Any:
    """Returns the first truthy value of `condition()`, polling until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def gateway(settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    """The real gateway served by uvicorn on 127.0.0.1:<free port>, with the demo directory and keys."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # http:// token endpoint, loopback only
    app = create_app(settings, engine)
    seed_directory(engine, settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="gateway", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    poll(lambda: server.started, what="the gateway to start")
    try:
        yield Gateway(base_url, engine, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def cli_token(gateway: Gateway, client_id: str) -> str:
    """Returns an access token from `spgw token` (client assertion signed with the demo key)."""
    done = subprocess.run(
        [str(SPGW), "token", client_id, "--url", gateway.base_url, "--data-dir", str(gateway.settings.data_dir)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={"PATH": "/usr/bin:/bin", "SPGW_DATABASE_URL": gateway.settings.database_url or ""},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def library_token(gateway: Gateway, client_id: str) -> Callable[[], str]:
    """Returns a token source for the CRM: the same client assertion flow, through the Python helper."""
    cache: dict[str, str] = {}

    def token() -> str:
        if "token" not in cache:
            cache["token"] = fetch_token(
                base_url=gateway.base_url,
                client_id=client_id,
                private_key_path=key_path(gateway.settings, client_id),
            )
        return cache["token"]

    return token


def headers(token: str, **extra: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "X-Request-ID": str(uuid.uuid4()),
        "X-Correlation-ID": str(uuid.uuid4()),
        **extra,
    }


def test_consented_referral_reaches_the_crm_which_accepts_it(gateway: Gateway) -> None:
    crm_token = library_token(gateway, "demo-vcse")
    with CrmSimulator(gateway_url=gateway.base_url, token=crm_token) as crm, httpx.Client(timeout=30) as http:
        admin = cli_token(gateway, "demo-admin")
        registered = http.put(
            f"{gateway.base_url}/admin/v1/organisations/8VC01",
            json={
                "name": "Lincoln Befriending Network",
                "kind": "vcse",
                "delivery_mode": "webhook",
                "webhook_url": crm.url,
            },
            headers=headers(admin),
        )
        assert registered.status_code == 200, registered.text
        crm.secret = registered.json()["webhook_secret"]
        assert (
            "webhook_secret" not in http.get(f"{gateway.base_url}/admin/v1/organisations", headers=headers(admin)).text
        )

        delivery = WorkerThread(gateway.engine, gateway.settings, interval=0.2)
        delivery.start()
        try:
            gp = cli_token(gateway, "demo-gp")
            nhs = nhs_number(3000)
            posted = http.post(
                f"{gateway.base_url}/fhir/$process-message",
                json=referral_message(nhs, "8VC01", consent_for=("8VC01",)),
                headers=headers(gp, **{"Content-Type": "application/fhir+json"}),
            )
            assert posted.status_code == 200, posted.text
            sr_id = next(
                e["resource"]["id"] for e in posted.json()["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
            )

            def task() -> dict[str, Any]:
                found = http.get(f"{gateway.base_url}/fhir/Task?focus=ServiceRequest/{sr_id}", headers=headers(gp))
                assert found.status_code == 200, found.text
                [entry] = found.json()["entry"]
                return entry["resource"]

            accepted = poll(lambda: task()["status"] == "accepted" and task(), what="the CRM to accept the referral")
        finally:
            delivery.stop()
            delivery.join(timeout=15)

        # The CRM records its acceptance once the gateway has answered it, just after the Task changed.
        crm.wait_for(lambda: bool(crm.state.accepted or crm.state.errors), timeout=WAIT, what="the CRM's record")
        assert crm.state.errors == []
        [packet] = crm.distinct().values()
        assert packet.body["kind"] == "referral"
        assert packet.body["person"]["first_name"] == "Ada"
        assert nhs not in packet.raw.decode()
        assert crm.state.accepted == [packet.body["referral_id"]]
        assert accepted["businessStatus"]["text"] == "accepted by 8VC01"
        referral_ids = [i["value"] for i in accepted["identifier"]]
        assert packet.body["referral_id"] in referral_ids
        with Session(gateway.engine) as session:
            rows = session.exec(select(OutboxMessage)).all()
        assert [(r.dedup_key, r.status, r.attempts) for r in rows] == [(packet.packet_id, "delivered", 1)]
        # The host's own view agrees.
        mine = http.get(f"{gateway.base_url}/vcse/v1/referrals", headers=headers(crm_token()))
        assert [r["status"] for r in mine.json()["referrals"]] == ["accepted"]


def test_simulator_refuses_bad_signatures_and_deduplicates() -> None:
    """The receiver half of the contract, checked on its own: 401 without our HMAC, one copy per packet id."""
    secret = "whsec_test-secret"
    body = b'{"kind": "cease", "packet_id": "PKT-1", "referral_id": "SPR-1"}'
    with CrmSimulator(secret=secret) as crm, httpx.Client(timeout=30) as http:
        forged = http.post(crm.url, content=body, headers=signed_headers("whsec_wrong", body, "PKT-1"))
        unsigned = http.post(crm.url, content=body, headers={"X-SPGW-Packet-Id": "PKT-1"})
        stale = http.post(crm.url, content=body, headers=signed_headers(secret, body, "PKT-1", now=time.time() - 3600))
        tampered = http.post(crm.url, content=body + b" ", headers=signed_headers(secret, body, "PKT-1"))
        assert [r.status_code for r in (forged, unsigned, stale, tampered)] == [401, 401, 401, 401]
        first = http.post(crm.url, content=body, headers=signed_headers(secret, body, "PKT-1"))
        again = http.post(crm.url, content=body, headers=signed_headers(secret, body, "PKT-1"))
        assert (first.status_code, again.status_code) == (200, 200)
        assert crm.received_ids() == ["PKT-1", "PKT-1"]
        assert list(crm.distinct()) == ["PKT-1"]
        assert crm.state.refused == 4
