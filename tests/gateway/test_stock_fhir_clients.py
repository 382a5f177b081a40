"""Issue 12: unmodified stock FHIR clients against the real gateway (uvicorn on 127.0.0.1, a port the OS
chose): fhirpy (sync and async: create, read, search with fetch_all, count(), sort, include) and
fhirclient (the token endpoint found in the CapabilityStatement, a client-credentials token with a signed
assertion, a search with include())."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fhirpy import AsyncFHIRClient, SyncFHIRClient
from sqlalchemy import Engine

from gateway.app import create_app
from gateway.auth.client_side import fetch_token, make_client_assertion
from gateway.demo import key_path, seed_directory
from gateway.settings import Settings
from tests.profiles.fhir_files import load
from tests.profiles.gp_message import referral_bundle

pytestmark = pytest.mark.e2e
NHS = "https://fhir.nhs.uk/Id/nhs-number"
REF_SYSTEM = "https://gp.example.nhs.uk/referrals"


@dataclass
class Served:
    base_url: str
    settings: Settings


@pytest.fixture
def served(settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # http:// token endpoint, loopback only
    app = create_app(settings, engine)
    seed_directory(engine, settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def bearer(served: Served, client_id: str = "demo-gp") -> str:
    token = fetch_token(
        base_url=served.base_url, client_id=client_id, private_key_path=key_path(served.settings, client_id)
    )
    return f"Bearer {token}"


def referral(ref_id: str, nhs: str, authored: str) -> dict:
    body = {k: v for k, v in load("sp-servicerequest.json").items() if k not in ("id", "meta")}  # a new one
    body["identifier"] = [{"system": REF_SYSTEM, "value": ref_id}]
    body["subject"] = {"identifier": {"system": NHS, "value": nhs}}
    body["authoredOn"] = authored
    return body


def test_fhirpy_sync_create_read_search_count_sort_include(served: Served) -> None:
    client = SyncFHIRClient(f"{served.base_url}/fhir", authorization=bearer(served))
    created = []
    for i, (nhs, authored) in enumerate(
        [
            ("9990001006", "2026-01-01T09:00:00Z"),
            ("9990001006", "2026-03-01T09:00:00Z"),
            ("9990002002", "2026-02-01T09:00:00Z"),
        ]
    ):
        resource = client.resource("ServiceRequest", **referral(f"FHIRPY-{i}", nhs, authored))
        resource.save()
        created.append(resource.id)
    read = client.reference("ServiceRequest", created[0]).to_resource()
    assert read["identifier"][0]["value"] == "FHIRPY-0"

    everything = client.resources("ServiceRequest").limit(1).fetch_all()  # follows `next` links page by page
    assert sorted(r.id for r in everything) == sorted(created)
    assert client.resources("ServiceRequest").count() == 3
    ordered = client.resources("ServiceRequest").sort("-authored").fetch()
    assert [r.id for r in ordered] == [created[1], created[2], created[0]]
    ada = client.resources("ServiceRequest").search(**{"patient:identifier": f"{NHS}|9990001006"})
    assert ada.count() == 2
    bundle = ada.include("ServiceRequest", "patient").fetch_raw()
    kinds = sorted((e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"])
    assert kinds == [("Patient", "include"), ("ServiceRequest", "match"), ("ServiceRequest", "match")]
    assert len(ada.include("ServiceRequest", "patient").fetch_all()) == 2  # the matches, without the includes


def test_fhirpy_async_create_read_search_count_include(served: Served) -> None:
    async def scenario() -> None:
        client = AsyncFHIRClient(f"{served.base_url}/fhir", authorization=bearer(served))
        resource = client.resource("ServiceRequest", **referral("FHIRPY-ASYNC", "9990001006", "2026-01-01T09:00:00Z"))
        await resource.save()
        read = await client.reference("ServiceRequest", resource.id).to_resource()
        assert read["status"] == "active"
        search = client.resources("ServiceRequest").search(identifier=f"{REF_SYSTEM}|FHIRPY-ASYNC")
        assert await search.count() == 1
        found = await search.include("ServiceRequest", "patient").fetch_all()
        assert [r.id for r in found] == [resource.id]
        raw = await search.include("ServiceRequest", "patient").fetch_raw()
        assert [e["resource"]["resourceType"] for e in raw["entry"]] == ["ServiceRequest", "Patient"]

    asyncio.run(scenario())


def test_fhirclient_token_from_the_capability_statement_and_search_with_include(served: Served) -> None:
    from fhirclient import client as fhirclient
    from fhirclient.models.servicerequest import ServiceRequest

    gp = SyncFHIRClient(f"{served.base_url}/fhir", authorization=bearer(served))
    gp.resource("ServiceRequest", **referral("FHIRCLIENT-1", "9990001006", "2026-01-01T09:00:00Z")).save()
    private_jwk = json.loads(Path(key_path(served.settings, "demo-gp")).read_text())
    token_url = f"{served.base_url}/oauth2/token"
    settings = {
        "app_id": "demo-gp",
        "api_base": f"{served.base_url}/fhir/",
        "jwt_token": make_client_assertion(client_id="demo-gp", private_jwk=private_jwk, token_url=token_url),
        "scope": "system/ServiceRequest.rs system/Patient.rs",
    }
    smart = fhirclient.FHIRClient(settings=settings)

    smart.prepare()  # reads /fhir/metadata; the token URL comes from its SMART oauth-uris extension
    assert smart.server.auth._token_uri == token_url
    smart.authorize()
    assert smart.ready

    search = ServiceRequest.where(struct={"identifier": f"{REF_SYSTEM}|FHIRCLIENT-1"}).include("subject")
    bundle = search.perform(smart.server)
    kinds = [(e.resource.resource_type, e.search.mode) for e in bundle.entry]
    assert kinds == [("ServiceRequest", "match"), ("Patient", "include")]
    resources = search.perform_resources(smart.server)
    assert [r.resource_type for r in resources] == ["ServiceRequest", "Patient"]


def test_the_message_answer_reads_as_an_r4_message_in_fhirclient(served: Served) -> None:
    from fhirclient.models.bundle import Bundle

    gp = SyncFHIRClient(
        f"{served.base_url}/fhir",
        authorization=bearer(served),
        extra_headers={
            "X-Request-ID": "4b4b4c53-2f8a-4f5b-9d0f-4a0f2a1c9b11",
            "X-Correlation-ID": "c0ffee00-0000-4000-8000-000000000001",
        },
    )
    answer = gp.execute(
        "$process-message", method="post", data=referral_bundle("9990001006", "A81001", ref_id="FC-MSG")
    )
    bundle = Bundle(answer)  # fhirclient's R4 models check every element's type
    assert bundle.type == "message"
    assert bundle.entry[0].resource.response.code == "ok"
