"""`spgw serve --workers 2` for real: both processes verify each other's tokens (one key, made by migrate),
metrics add up across the processes, and SPGW_LOG_FORMAT=json lines are JSON objects."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

from gateway.auth.client_side import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.demo import key_path, seed_directory
from tests.support.processes import free_port, group, serving

pytestmark = pytest.mark.e2e


def test_two_worker_processes_share_one_signing_key_and_report_metrics_together(settings, engine, tmp_path) -> None:
    seed_directory(engine, settings)
    jwk = json.loads(key_path(settings, "demo-gp").read_text())
    metrics_port = free_port()
    log = tmp_path / "serve.log"
    with serving(settings, log, "--workers", "2", "--metrics-port", str(metrics_port), SPGW_LOG_FORMAT="json") as gw:
        assert len(group(gw.proc.pid)) >= 3  # the supervisor and two workers
        statuses = []
        # No keep-alive: every request is a new connection, so the two processes share the work, and a
        # token issued by one is verified by the other (the 401-on-half-the-requests bug).
        with httpx.Client(base_url=gw.base_url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            for _ in range(8):
                assertion = make_client_assertion(
                    client_id="demo-gp", private_jwk=jwk, token_url=f"{gw.base_url}/oauth2/token"
                )
                form = {
                    "grant_type": "client_credentials",
                    "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_assertion": assertion,
                }
                token = http.post("/oauth2/token", data=form)
                assert token.status_code == 200, token.text
                headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
                for _ in range(3):
                    headers["X-Request-ID"] = str(uuid.uuid4())
                    statuses.append(http.get("/fhir/ServiceRequest", headers=headers).status_code)
        assert statuses == [200] * 24
        exposed = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    counted = re.search(r'spgw_http_requests_total\{route="/fhir/ServiceRequest",status="200"\} (\S+)', exposed)
    assert counted is not None and float(counted.group(1)) == 24  # both processes' samples, added up
    assert "spgw_audit_log_size" in exposed
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    access = [json.loads(line) for line in lines if '"route"' in line]
    assert len([a for a in access if a["route"] == "/fhir/ServiceRequest" and a["status"] == 200]) == 24
    assert len({a["request_id"] for a in access if a["route"] == "/fhir/ServiceRequest"}) == 24
