"""Two gateway processes and two delivery workers on one PostgreSQL, under load; kill -9 one of each.
Nothing acknowledged is lost or stored twice, a de-duplicating receiver sees every packet, the audit
log stays one gap-free, valid tree, and a checkpoint taken mid-run is consistent with the final log."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from gateway.auth.client_side import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.cli import main
from gateway.demo import key_path, seed_directory
from gateway.models import OutboxMessage
from gateway.organisations import upsert_organisation
from tests.faults.test_database_restart import STORED_REFERRAL_IDS
from tests.gateway.crm_simulator import CrmSimulator
from tests.profiles.gp_message import referral_bundle
from tests.support.processes import serving, spgw_process, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
FHIR = {"Content-Type": "application/fhir+json"}
PUBLIC = "http://gateway.test"
NHS = ("9990001006", "9990001014", "9990001022", "9990001030")


def spgw(settings, *args: str):  # type: ignore[no-untyped-def]
    env = {"SPGW_DATA_DIR": str(settings.data_dir), "SPGW_DATABASE_URL": settings.database_url}
    return CliRunner().invoke(main, [*args, "--data-dir", str(settings.data_dir)], env=env)


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_kill_9_of_one_gateway_and_one_worker_loses_nothing(settings, engine, tmp_path) -> None:
    seed_directory(engine, settings)
    jwk = json.loads(key_path(settings, "demo-gp").read_text())
    worker_args = ["worker", "--interval", "0.1", "--lease", "2"]
    with CrmSimulator(delay=0.02) as crm:
        with Session(engine) as session:
            _, crm.secret = upsert_organisation(
                session,
                org_id="8VC01",
                name="Befriending",
                kind="vcse",
                delivery_mode="webhook",
                webhook_url=crm.url,
                allow_insecure_endpoints=True,  # the simulator listens on loopback
            )
            session.commit()
        with (
            serving(settings, tmp_path / "gw1.log", SPGW_PUBLIC_BASE_URL=PUBLIC) as gw1,
            serving(settings, tmp_path / "gw2.log", SPGW_PUBLIC_BASE_URL=PUBLIC) as gw2,
            spgw_process(worker_args, settings, tmp_path / "w1.log") as w1,
            spgw_process(worker_args, settings, tmp_path / "w2.log") as w2,
        ):
            # both processes sit behind one public URL (a load balancer's): tokens name it as issuer
            assertion = make_client_assertion(client_id="demo-gp", private_jwk=jwk, token_url=f"{PUBLIC}/oauth2/token")
            form = {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE}
            token = httpx.post(f"{gw1.base_url}/oauth2/token", data={**form, "client_assertion": assertion}, timeout=10)
            auth = {"Authorization": f"Bearer {token.json()['access_token']}", **FHIR}
            results: list[tuple[str, int | None]] = []
            stop = threading.Event()

            def send(sender: int) -> None:
                n = 0
                while not stop.is_set():
                    ref = f"K9-{sender}-{n}"
                    base = (gw1, gw2)[n % 2].base_url  # alternate: half the load goes to the one killed
                    n += 1
                    bundle = referral_bundle(NHS[n % 4], "A81001", vcse_id="8VC01", ref_id=ref, consent_to=["8VC01"])
                    ids = {"X-Request-ID": str(uuid.uuid4()), "X-Correlation-ID": str(uuid.uuid4())}
                    try:
                        r = httpx.post(
                            f"{base}/fhir/$process-message", json=bundle, headers={**auth, **ids}, timeout=30
                        )
                        results.append((ref, r.status_code))
                    except httpx.HTTPError:
                        results.append((ref, None))  # never acknowledged

            senders = [threading.Thread(target=send, args=(i,)) for i in range(2)]
            for thread in senders:
                thread.start()
            try:
                time.sleep(1.5)
                mid = tmp_path / "mid.note"
                assert spgw(settings, "audit", "checkpoint", "--out", str(mid)).exit_code == 0
                os.killpg(gw1.proc.pid, signal.SIGKILL)
                wait_until(lambda: len(crm.received_ids()) > 0, 30, "a first delivery")
                os.killpg(w1.proc.pid, signal.SIGKILL)
                time.sleep(2)
            finally:
                stop.set()
                for thread in senders:
                    thread.join(60)

            def drained() -> bool:
                with Session(engine) as session:
                    rows = session.exec(select(OutboxMessage)).all()
                    return bool(rows) and all(r.status == "delivered" for r in rows)

            wait_until(drained, 60, "the surviving worker to deliver everything", w2)
            assert gw2.proc.poll() is None and w2.proc.poll() is None

    statuses = Counter(status for _, status in results)
    assert set(statuses) <= {200, None}, statuses
    assert statuses[None] > 0 and statuses[200] > 0  # the kill landed under load
    accepted = {ref for ref, status in results if status == 200}
    with engine.connect() as conn:
        stored = Counter(v for (v,) in conn.execute(STORED_REFERRAL_IDS) if v.startswith("K9-"))
    assert accepted <= set(stored)  # nothing acknowledged is lost
    assert all(count == 1 for count in stored.values())  # and nothing is stored twice
    with Session(engine) as session:
        queued = {r.dedup_key for r in session.exec(select(OutboxMessage).where(OutboxMessage.kind == "referral"))}
    assert set(crm.distinct()) == queued  # the receiver saw every packet (de-duplicated on its id)
    assert crm.state.refused == 0
    verified = spgw(settings, "audit", "verify", "--checkpoint", str(mid))
    assert verified.exit_code == 0, verified.output  # gap-free, one tree, consistent with the mid-run checkpoint
