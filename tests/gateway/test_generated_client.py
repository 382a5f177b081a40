"""Proof that a stock toolchain works: `openapi-python-client` generates a Python client from the OpenAPI
document the running gateway serves, and that client, unmodified, makes a sandbox referral, lists
referrals, accepts one and posts an outcome. A few seconds of generation: slow-ish, kept in the suite."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import uvicorn

from gateway.app import create_app
from gateway.auth.client_side import fetch_token
from gateway.cli.run import prepare
from gateway.db import make_engine
from gateway.demo import key_path, seed_directory
from gateway.settings import Settings

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "spgw_generated_client"


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Settings]]:
    """The gateway with the sandbox on, served by uvicorn on 127.0.0.1:<free port>."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # http:// token endpoint, loopback only
    settings = Settings(data_dir=tmp_path / "data", sandbox=True)
    prepare(settings)  # what `spgw migrate` does: the app itself never migrates or makes keys
    engine = make_engine(settings)
    app = create_app(settings, engine)
    seed_directory(engine, settings)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", settings
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        engine.dispose()


def generate(base_url: str, where: Path) -> ModuleType:
    """Fetches /openapi.json from the running gateway, generates the client package, imports it."""
    spec = where / "openapi.json"
    spec.write_bytes(httpx.get(f"{base_url}/openapi.json", timeout=10).content)
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(spec), "--output-path", str(where / PACKAGE), "--meta", "none"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr  # nothing was left out
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))


@pytest.mark.e2e
def test_a_generated_client_lists_accepts_and_posts_an_outcome(gateway, tmp_path: Path) -> None:
    if not GENERATOR.exists():
        pytest.skip("openapi-python-client is not installed (pip install -e '.[test]')")
    base_url, settings = gateway
    started = time.monotonic()
    generate(base_url, tmp_path)
    api = importlib.import_module(f"{PACKAGE}.api.vcse_hosts")
    sandbox = importlib.import_module(f"{PACKAGE}.api.vcse_sandbox.vcse_sandbox_referral")
    models = importlib.import_module(f"{PACKAGE}.models")
    client_module = importlib.import_module(f"{PACKAGE}.client")
    for name in ("vcse_list_referrals", "vcse_set_status", "vcse_submit_outcomes"):
        importlib.import_module(f"{api.__name__}.{name}")
    token = fetch_token(base_url=base_url, client_id="demo-vcse", private_key_path=key_path(settings, "demo-vcse"))
    crm = client_module.AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)

    made = sandbox.sync(client=crm)
    assert isinstance(made, models.SandboxReferral) and made.status == "new"

    listed = api.vcse_list_referrals.sync(client=crm)
    assert isinstance(listed, models.ReferralList)
    assert made.referral_id in [p.referral_id for p in listed.referrals]
    assert listed.cursor
    again = api.vcse_list_referrals.sync(client=crm, since=listed.cursor)
    assert again.referrals == []

    accepted = api.vcse_set_status.sync(
        made.referral_id, client=crm, body=models.StatusUpdate(status=models.StatusUpdateStatus.ACCEPTED)
    )
    assert isinstance(accepted, models.StatusAnswer) and accepted.task_status == "accepted"

    submission = models.OutcomeSubmission(
        submission_id="gen-client-1",
        recorded_at=datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
        stage=models.OutcomeSubmissionStage.BASELINE,
        swemwbs=models.Swemwbs(items=[3, 3, 2, 3, 3, 2, 3]),
    )
    outcome = api.vcse_submit_outcomes.sync_detailed(made.referral_id, client=crm, body=submission)
    assert outcome.status_code == 201
    assert isinstance(outcome.parsed, models.OutcomeAnswer)
    assert outcome.parsed.observations and outcome.parsed.observations[0].startswith("Observation/")

    refused = api.vcse_set_status.sync(
        "SPR-0000000000000000", client=crm, body=models.StatusUpdate(status=models.StatusUpdateStatus.ACCEPTED)
    )
    assert isinstance(refused, models.OperationOutcome)  # errors parse as the documented OperationOutcome
    assert time.monotonic() - started < 60
