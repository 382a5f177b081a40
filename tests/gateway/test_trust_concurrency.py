"""Uniqueness is the database's job (issue 10 item 5): concurrent requests against a real server with
two worker processes (uvicorn --workers 2), on SQLite and on the suite's PostgreSQL.

- eight concurrent referrals for one new patient make one Patient for that NHS number in the tenant;
- eight concurrent posts of one referral (same business identifier, fresh X-Request-IDs: a GP system
  retrying after time-outs) store it once; the others answer 409.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from gateway.models import FhirResource, ReferralIdentifier
from tests.gateway.test_consent_flow import nhs_number, referral_message

pytestmark = pytest.mark.e2e
CONCURRENT = 8
ROUNDS = 5
BASE = "http://testserver"  # the tokens' issuer and audience (SPGW_PUBLIC_BASE_URL of the server)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(app, settings, tmp_path: Path) -> Iterator[str]:
    """The gateway under uvicorn with two worker processes, over the test's database. The `app` fixture
    has migrated it, seeded the directory and made the token-signing key first, so both processes
    load one key instead of each making its own."""
    port = free_port()
    env = {
        **os.environ,
        "SPGW_DATA_DIR": str(settings.data_dir),
        "SPGW_PUBLIC_BASE_URL": BASE,
        **({"SPGW_DATABASE_URL": settings.database_url} if settings.database_url else {}),
    }
    log = (tmp_path / "uvicorn.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "gateway.asgi:app", "--workers", "2", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                if httpx.get(f"{url}/fhir/metadata", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"uvicorn did not start: {(tmp_path / 'uvicorn.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def post_all(url: str, token_for, messages: list[dict[str, Any]]) -> list[httpx.Response]:
    """Posts the messages at once, one thread each, each with its own fresh X-Request-ID."""

    def post(message: dict[str, Any]) -> httpx.Response:
        headers = {**token_for("demo-gp"), "Content-Type": "application/fhir+json"}
        return httpx.post(f"{url}/fhir/$process-message", json=message, headers=headers, timeout=60)

    with ThreadPoolExecutor(len(messages)) as pool:
        return list(pool.map(post, messages))


def count(engine, rtype: str, nhs: str) -> int:
    with Session(engine) as session:
        rows = session.exec(
            select(FhirResource.pk).where(
                FhirResource.resource_type == rtype, FhirResource.tenant == "A81001", FhirResource.patient_nhs == nhs
            )
        ).all()
    return len(rows)


def test_concurrent_referrals_for_a_new_patient_make_one_patient(server: str, token_for, engine) -> None:
    for round_ in range(ROUNDS):
        nhs = nhs_number(8700 + 10 * round_)
        answers = post_all(server, token_for, [referral_message(nhs, "8VC01") for _ in range(CONCURRENT)])

        assert [a.status_code for a in answers] == [200] * CONCURRENT, [a.text[:200] for a in answers]
        assert count(engine, "Patient", nhs) == 1
        assert count(engine, "ServiceRequest", nhs) == CONCURRENT
        patients = {
            e["resource"]["id"]
            for a in answers
            for e in a.json()["entry"]
            if e["resource"]["resourceType"] == "Patient"
        }
        assert len(patients) == 1  # every referral points at the winner's Patient


def test_concurrent_retries_of_one_referral_store_it_once(server: str, token_for, engine) -> None:
    for round_ in range(ROUNDS):
        nhs = nhs_number(8800 + 10 * round_)
        message = referral_message(nhs, "8VC01")
        answers = post_all(server, token_for, [message] * CONCURRENT)

        assert Counter(a.status_code for a in answers) == Counter({200: 1, 409: CONCURRENT - 1}), [
            a.text[:200] for a in answers
        ]
        for refused in (a for a in answers if a.status_code == 409):
            assert "was already received" in refused.json()["issue"][0]["diagnostics"]
        assert count(engine, "ServiceRequest", nhs) == 1
        assert count(engine, "Task", nhs) == 1
        identifier = message["entry"][1]["resource"]["identifier"][0]
        with Session(engine) as session:
            claimed = session.exec(
                select(ReferralIdentifier).where(
                    ReferralIdentifier.tenant == "A81001", ReferralIdentifier.value == identifier["value"]
                )
            ).all()
        assert len(claimed) == 1
