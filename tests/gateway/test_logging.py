"""What the gateway logs: route templates, statuses and ids; never an access token, a client assertion,
private key material, a webhook secret or an NHS number, even with every logger at DEBUG.

Two runs: the full flow in process (caplog at DEBUG for every logger), and `spgw demo` as a real
subprocess whose stdout and stderr are read back after a few requests.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.auth.client_side import CLIENT_ASSERTION_TYPE, make_client_assertion
from gateway.demo import key_path
from gateway.logformat import JsonFormatter
from tests.gateway.test_cli_demo import demo_token, running_demo
from tests.profiles.gp_message import referral_bundle

NHS = "https://fhir.nhs.uk/Id/nhs-number"
PATIENT = "9990001006"  # fictitious, in the 999 test range
BAD_NHS = "9990001007"  # fails Modulus 11: the profile error names it in its OperationOutcome
TOKEN_URL = "http://testserver/oauth2/token"
PRIVATE_KEY_MARK = '"d":'
# The in-process test drives the app with Starlette's TestClient, which is an httpx client: its own
# "HTTP Request: GET <url>" lines are the caller's log, not the gateway's, and are left out.
CALLER_LOGGERS = ("httpx", "httpcore")


class Secrets:
    """Everything the run handled that must never reach a log line."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def add(self, label: str, value: str) -> str:
        self.values[label] = value
        if value.count(".") == 2:  # a JWT: its signature alone must not appear either
            self.values[f"{label} (signature)"] = value.rsplit(".", 1)[1]
        return value

    def found_in(self, text: str) -> list[str]:
        leaked = [label for label, value in self.values.items() if value and value in text]
        if PRIVATE_KEY_MARK in text:
            leaked.append("private key material")
        return leaked


@pytest.fixture
def every_logger_at_debug(caplog: pytest.LogCaptureFixture, app) -> pytest.LogCaptureFixture:
    """caplog at DEBUG for the root logger and every logger that exists once the app is built."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        if isinstance(logging.root.manager.loggerDict[name], logging.Logger):
            caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def captured(caplog: pytest.LogCaptureFixture, log_format: str = "text") -> str:
    lines = []
    for record in caplog.records:
        if record.name.split(".")[0] in CALLER_LOGGERS:
            continue
        if log_format == "json":  # SPGW_LOG_FORMAT=json: exactly what the JSON formatter writes
            lines.append(JsonFormatter().format(record))
            continue
        lines.append(f"{record.name} {record.levelname} {record.getMessage()}")
        if record.exc_info:
            lines.append(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            lines.append(record.stack_info)
    return "\n".join(lines)


def get_token(client, settings, secrets: Secrets, client_id: str) -> dict[str, str]:
    jwk = json.loads(key_path(settings, client_id).read_text())
    secrets.add(f"{client_id} private key d", jwk["d"])
    assertion = secrets.add(
        f"{client_id} client assertion",
        make_client_assertion(client_id=client_id, private_jwk=jwk, token_url=TOKEN_URL),
    )
    form = {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE}
    response = client.post("/oauth2/token", data={**form, "client_assertion": assertion})
    assert response.status_code == 200, response.text
    token = secrets.add(f"{client_id} access token", response.json()["access_token"])
    return {"Authorization": f"Bearer {token}", "X-Request-ID": str(uuid.uuid4())}


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_full_flow_at_debug_logs_no_token_assertion_key_secret_or_nhs_number(
    client, settings, every_logger_at_debug: pytest.LogCaptureFixture, log_format: str
) -> None:
    secrets = Secrets()
    secrets.add("NHS number", PATIENT)
    secrets.add("invalid NHS number", BAD_NHS)
    gp = get_token(client, settings, secrets, "demo-gp")
    vcse = get_token(client, settings, secrets, "demo-vcse")
    admin = get_token(client, settings, secrets, "demo-admin")

    def fhir() -> dict[str, str]:
        ids = {"X-Request-ID": str(uuid.uuid4()), "X-Correlation-ID": str(uuid.uuid4())}
        return {**ids, "Content-Type": "application/fhir+json"}

    # a referral, and a search by NHS number
    bundle = referral_bundle(PATIENT, "A81001", vcse_id="8VC01", ref_id="LOG-1", consent_to=["8VC01"])
    assert client.post("/fhir/$process-message", json=bundle, headers={**gp, **fhir()}).status_code == 200
    found = client.get("/fhir/ServiceRequest", params={"patient:identifier": f"{NHS}|{PATIENT}"}, headers=gp)
    assert found.json()["entry"]
    # the VCSE host pulls its packet and accepts it
    (packet,) = client.get("/vcse/v1/referrals", headers=vcse).json()["referrals"]
    accepted = client.post(
        f"/vcse/v1/referrals/{packet['referral_id']}/status", json={"status": "accepted"}, headers=vcse
    )
    assert accepted.status_code == 200
    # a webhook host is registered: its HMAC secret is shown once, to the admin
    webhook = {
        "name": "Webhook host",
        "kind": "vcse",
        "delivery_mode": "webhook",
        "webhook_url": "http://127.0.0.1:9/in",
    }
    registered = client.put("/admin/v1/organisations/8VC09", json=webhook, headers=admin)
    assert registered.status_code == 200, registered.text
    secrets.add("webhook secret", registered.json()["webhook_secret"])
    # errors: a profile failure naming a bad NHS number, an NHS number in a path, a refused token
    bad = referral_bundle(BAD_NHS, "A81001", vcse_id="8VC01", ref_id="LOG-2", consent_to=["8VC01"])
    assert client.post("/fhir/$process-message", json=bad, headers={**gp, **fhir()}).status_code == 422
    assert client.get(f"/fhir/Patient/{PATIENT}", headers=gp).status_code == 404
    assert client.get(f"/nothing/{PATIENT}", headers=gp).status_code == 404
    replay = {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE}
    replay["client_assertion"] = secrets.values["demo-gp client assertion"]
    assert client.post("/oauth2/token", data=replay).status_code == 401

    text = captured(every_logger_at_debug, log_format)

    assert "GET /fhir/ServiceRequest 200" in text  # the access log ran, with the route template
    assert secrets.found_in(text) == []
    if log_format == "json":
        lines = [json.loads(line) for line in text.splitlines()]  # every line one JSON object
        assert all(isinstance(line, dict) and {"time", "level", "message"} <= line.keys() for line in lines)
        access = [line for line in lines if line.get("route") == "/fhir/ServiceRequest" and line["status"] == 200]
        assert access, "no JSON access line for the search"
        assert {"duration_ms", "request_id", "correlation_id", "method"} <= access[0].keys()
        assert all(PATIENT not in json.dumps(line) for line in lines)


def test_an_unexpected_error_logs_its_type_and_trace_but_not_its_message(
    app, settings, monkeypatch: pytest.MonkeyPatch, every_logger_at_debug: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from gateway.pipeline import referrals

    def failing(ctx: Any, bundle: dict[str, Any]) -> Any:
        raise ValueError(f"could not file the referral for patient {PATIENT}")

    monkeypatch.setattr(referrals, "accept_message", failing)
    bundle = referral_bundle(PATIENT, "A81001", vcse_id="8VC01", ref_id="LOG-3", consent_to=["8VC01"])
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        gp = get_token(client, settings, Secrets(), "demo-gp")
        response = client.post(
            "/fhir/$process-message",
            json=bundle,
            headers={**gp, "Content-Type": "application/fhir+json", "X-Correlation-ID": str(uuid.uuid4())},
        )

    assert response.status_code == 500
    assert PATIENT not in response.text
    text = captured(every_logger_at_debug)
    assert "unexpected ValueError on POST /fhir/$process-message" in text
    assert "failing" in text  # the trace is there for the operator
    assert PATIENT not in text


def test_spgw_demo_output_holds_no_token_assertion_key_or_nhs_number(tmp_path: Path) -> None:
    secrets = Secrets()
    with running_demo(tmp_path / "data", tmp_path / "demo.log") as demo:
        for client_id in ("demo-gp", "demo-vcse"):
            jwk = json.loads((demo.data_dir / "demo-keys" / f"{client_id}.jwk.json").read_text())
            secrets.add(f"{client_id} private key d", jwk["d"])
        gp = secrets.add("gp access token", demo_token(demo, "demo-gp"))
        vcse = secrets.add("vcse access token", demo_token(demo, "demo-vcse"))
        secrets.add("NHS number", PATIENT)  # the demo's own sample referral
        with httpx.Client(base_url=demo.base_url, timeout=10.0) as http:
            assertion = secrets.add(
                "client assertion",
                make_client_assertion(
                    client_id="demo-gp",
                    private_jwk=json.loads((demo.data_dir / "demo-keys" / "demo-gp.jwk.json").read_text()),
                    token_url=f"{demo.base_url}/oauth2/token",
                ),
            )
            form = {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE}
            assert http.post("/oauth2/token", data={**form, "client_assertion": assertion}).status_code == 200
            assert http.post("/oauth2/token", data={**form, "client_assertion": assertion}).status_code == 401
            search = {"patient:identifier": f"{NHS}|{PATIENT}"}
            auth = {"Authorization": f"Bearer {gp}"}
            assert http.get("/fhir/ServiceRequest", params=search, headers=auth).json()["entry"]
            assert http.get(f"/fhir/Patient/{PATIENT}", headers=auth).status_code == 404
            assert http.get("/vcse/v1/referrals", headers={"Authorization": f"Bearer {vcse}"}).status_code == 200
            assert http.get("/fhir/ServiceRequest", headers={"Authorization": "Bearer forged"}).status_code == 401
        output = demo.output()

    assert "GET /fhir/ServiceRequest" in output  # the requests were logged, by route template
    assert secrets.found_in(output) == []


def test_the_cli_log_format_shows_an_exceptions_trace_but_not_its_message() -> None:
    from gateway.cli.common import LOG_FORMAT, TraceOnlyFormatter

    try:
        try:
            raise KeyError(PATIENT)
        except KeyError as inner:
            raise RuntimeError(f"Exception in ASGI application for {PATIENT}") from inner
    except RuntimeError as exc:
        record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "failed", (), (type(exc), exc, None))

    line = TraceOnlyFormatter(LOG_FORMAT).format(record)

    assert "builtins.RuntimeError (message withheld)" in line
    assert "builtins.KeyError (message withheld)" in line
    assert "test_the_cli_log_format_shows_an_exceptions_trace_but_not_its_message" in line  # the frames
    assert PATIENT not in line


def test_the_json_log_format_shows_an_exceptions_trace_but_not_its_message() -> None:
    from gateway.logformat import JsonFormatter

    try:
        raise RuntimeError(f"Exception in ASGI application for {PATIENT}")
    except RuntimeError as exc:
        record = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "failed", (), (type(exc), exc, None))

    line = json.loads(JsonFormatter().format(record))

    assert line["level"] == "ERROR" and line["message"] == "failed"
    assert "builtins.RuntimeError (message withheld)" in line["trace"]
    assert PATIENT not in json.dumps(line)
