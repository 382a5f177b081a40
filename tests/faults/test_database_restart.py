"""PostgreSQL restarted (`pg_ctl restart -m fast`) while clients send referrals to `spgw serve`: every
request gets 2xx, or 503 with Retry-After and an OperationOutcome; every 2xx referral is stored exactly
once; readiness goes red, then green again without restarting the gateway."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import text

from gateway.auth.client_side import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.demo import key_path, seed_directory
from tests.profiles.gp_message import referral_bundle
from tests.support.postgres import _run_as
from tests.support.processes import serving

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
CLIENTS = 3
FHIR = {"Content-Type": "application/fhir+json"}
# The referrer's identifier of each stored ServiceRequest (the ref_id the test sent).
STORED_REFERRAL_IDS = text(
    "SELECT t.value FROM fhir_search_token t JOIN fhir_resource r ON r.pk = t.resource_pk "
    "WHERE r.resource_type = 'ServiceRequest' AND t.param = 'identifier' "
    "AND t.system = 'https://gp.example.nhs.uk/referrals'"
)


def restart(server) -> None:  # type: ignore[no-untyped-def]
    subprocess.run(
        [
            *_run_as(server.user),
            str(server.bin_dir / "pg_ctl"),
            "-D",
            str(server.root / "data"),
            "-l",
            str(server.root / "server.log"),
            "-m",
            "fast",
            "-w",
            "restart",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_database_restart_under_load_costs_503s_not_errors_or_duplicates(
    settings, engine, postgres_server, tmp_path
) -> None:
    seed_directory(engine, settings)
    jwk = json.loads(key_path(settings, "demo-gp").read_text())
    with serving(settings, tmp_path / "serve.log") as gw:
        assertion = make_client_assertion(client_id="demo-gp", private_jwk=jwk, token_url=f"{gw.base_url}/oauth2/token")
        form = {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE}
        token = httpx.post(f"{gw.base_url}/oauth2/token", data={**form, "client_assertion": assertion}, timeout=10)
        auth = {"Authorization": f"Bearer {token.json()['access_token']}", **FHIR}
        stop = threading.Event()
        results: list[tuple[str, httpx.Response]] = []
        problems: list[str] = []
        readiness: list[int] = []

        def send(worker: int) -> None:
            n = 0
            with httpx.Client(base_url=gw.base_url, timeout=30) as http:
                while not stop.is_set():
                    ref = f"PGR-{worker}-{n}"
                    n += 1
                    nhs = ("9990001006", "9990001014", "9990001022")[worker % 3]
                    bundle = referral_bundle(nhs, "A81001", vcse_id="8VC01", ref_id=ref, consent_to=["8VC01"])
                    ids = {"X-Request-ID": str(uuid.uuid4()), "X-Correlation-ID": str(uuid.uuid4())}
                    try:
                        results.append((ref, http.post("/fhir/$process-message", json=bundle, headers={**auth, **ids})))
                    except httpx.HTTPError as exc:
                        problems.append(f"{ref}: {type(exc).__name__}")

        def watch() -> None:
            with httpx.Client(base_url=gw.base_url, timeout=10) as http:
                while not stop.is_set():
                    try:
                        readiness.append(http.get("/readyz").status_code)
                    except httpx.HTTPError:
                        readiness.append(0)
                    time.sleep(0.05)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(CLIENTS)]
        threads.append(threading.Thread(target=watch))
        for thread in threads:
            thread.start()
        try:
            time.sleep(2)
            restart(postgres_server)
            deadline = time.monotonic() + 30  # until the gateway is ready again, and a little more
            while time.monotonic() < deadline and not (readiness and readiness[-1] == 200):
                time.sleep(0.1)
            time.sleep(2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)

    assert problems == []
    statuses = Counter(r.status_code for _, r in results)
    assert set(statuses) <= {200, 503}, statuses
    for _, response in results:
        if response.status_code == 503:
            assert response.headers["retry-after"].isdigit()
            assert response.json()["resourceType"] == "OperationOutcome"
    assert 0 in readiness or 503 in readiness, "readiness never went red"
    assert readiness[-1] == 200, "readiness did not come back"
    assert statuses[200] > 0 and results[-1][1].status_code == 200, "the gateway did not recover"
    accepted = {ref for ref, r in results if r.status_code == 200}
    with engine.connect() as conn:
        refs = Counter(value for (value,) in conn.execute(STORED_REFERRAL_IDS) if value.startswith("PGR-"))
    assert set(refs) == accepted  # every acknowledged referral is there, and nothing refused is
    assert all(count == 1 for count in refs.values()), refs  # exactly once
