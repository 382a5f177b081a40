"""Issue 10 items 8, 11, 17 and 20 and issue 12 item 4, through HTTP: header caps (431), BaRS trace ids
as UUIDs, every caller-controlled string that reaches the audit bounded, search bounds (400), refusals
at the edge audited, and X-End-User only from a client registered to send it, recorded as its claim."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from audit.store import AuditEntry
from gateway.db import transaction
from gateway.models import Client
from tests.profiles.gp_message import referral_bundle

FHIR_JSON = "application/fhir+json"
MESSAGE = "/fhir/$process-message"


def audit_state(engine) -> tuple[int, int]:
    """(entries, total bytes of their content)."""
    with Session(engine) as session:
        count, size = session.exec(
            select(func.count(), func.coalesce(func.sum(func.length(AuditEntry.content)), 0))
        ).one()
    return int(count), int(size)


def new_entries(engine, before: int) -> list[dict[str, Any]]:
    with Session(engine) as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.seq >= before).order_by(AuditEntry.seq)).all()
    return [json.loads(r.content) for r in rows if r.content]


def bars_codes(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [i["details"]["coding"][0]["code"] for i in response.json()["issue"]]


# -- item 8: header caps and trace ids ---------------------------------------------------------


def test_a_20_kb_header_is_431_and_adds_only_a_small_audit_entry(client, engine) -> None:
    before_count, before_size = audit_state(engine)

    response = client.get("/fhir/ServiceRequest", headers={"X-Request-ID": "R" * 20480})

    assert response.status_code == 431
    assert response.json()["resourceType"] == "OperationOutcome"
    count, size = audit_state(engine)
    assert count == before_count + 1  # the refusal is audited (item 17)...
    assert size - before_size < 2048  # ...without the header
    [event] = new_entries(engine, before_count)
    assert "431" in event["outcomeDesc"] and "RRRR" not in json.dumps(event)


def test_a_request_with_too_many_headers_is_431(client) -> None:
    headers = {f"X-Filler-{n}": "x" for n in range(150)}
    assert client.get("/fhir/metadata", headers=headers).status_code == 431


@pytest.mark.parametrize("header", ["X-Request-ID", "X-Correlation-ID"])
def test_a_trace_id_that_is_not_a_uuid_is_400_rec_bad_request(client, token_for, engine, header: str) -> None:
    before, _ = audit_state(engine)
    headers = {**token_for("demo-gp"), header: "123", "Content-Type": FHIR_JSON}

    response = client.post(MESSAGE, json=referral_bundle("9990001006", "A81001"), headers=headers)

    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["details"]["coding"][0]["code"] == "REC_BAD_REQUEST"
    assert issue["expression"] == [header]
    assert response.headers["x-request-id"] != "123"
    assert any("not a UUID" in e.get("outcomeDesc", "") for e in new_entries(engine, before))
    assert client.get("/fhir/ServiceRequest", headers=token_for("demo-gp")).json().get("entry", []) == []


def test_both_trace_ids_missing_is_one_outcome_with_two_issues(client, token_for) -> None:
    headers = {k: v for k, v in token_for("demo-gp").items() if k not in ("X-Request-ID", "X-Correlation-ID")}

    response = client.post(
        MESSAGE, json=referral_bundle("9990001006", "A81001"), headers={**headers, "Content-Type": FHIR_JSON}
    )

    assert response.status_code == 400
    issues = response.json()["issue"]
    assert [(i["code"], i["expression"]) for i in issues] == [
        ("required", ["X-Request-ID"]),
        ("required", ["X-Correlation-ID"]),
    ]
    assert bars_codes(response) == ["REC_BAD_REQUEST", "REC_BAD_REQUEST"]


def test_uuid_trace_ids_are_accepted_and_echoed(client, token_for) -> None:
    headers = token_for("demo-gp")
    response = client.get("/fhir/ServiceRequest", headers=headers)
    assert response.status_code == 200
    assert response.headers["x-request-id"] == headers["X-Request-ID"]


# -- item 17: a 413 is audited ------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_and_audited(client, token_for, engine) -> None:
    before, _ = audit_state(engine)
    headers = {**token_for("demo-gp"), "Content-Type": FHIR_JSON}

    response = client.post(MESSAGE, content=b" " * (2 << 20), headers=headers)

    assert response.status_code == 413
    assert any("413" in e.get("outcomeDesc", "") for e in new_entries(engine, before))


# -- item 11: search bounds ---------------------------------------------------------------------

BOUNDS = {
    "a huge _offset": "_offset=9223372036854775808",
    "an _offset past the paging bound": "_offset=10001",
    "2,000 repeated parameters": "&".join(["status=active"] * 2000),
    "9,000 alternatives": "status=" + ",".join(["active"] * 9000),
    # (httpx caps a URL at 64 KiB, so the values are short)
    "16,000 identifiers": "identifier=" + ",".join("1" * 16000),
    "4,000 repeated identifiers": "&".join(["identifier=1"] * 4000),
    "a 2,000-character value": "identifier=" + "x" * 2000,
}


@pytest.mark.parametrize("query", list(BOUNDS.values()), ids=list(BOUNDS))
def test_search_bounds_answer_400(client, token_for, query: str) -> None:
    response = client.get(f"/fhir/ServiceRequest?{query}", headers=token_for("demo-gp"))
    assert response.status_code == 400, response.text[:200]
    assert response.json()["resourceType"] == "OperationOutcome"


# -- item 20: X-End-User ------------------------------------------------------------------------


def _allow_end_user(engine, client_id: str) -> None:
    with transaction(engine) as session:
        row = session.get(Client, client_id)
        assert row is not None
        row.may_assert_end_user = True
        session.add(row)


def test_x_end_user_from_a_client_not_registered_for_it_is_403(client, token_for) -> None:
    response = client.get("/fhir/ServiceRequest", headers=token_for("demo-gp", **{"X-End-User": "dr.jones"}))
    assert response.status_code == 403
    assert "X-End-User" in response.json()["issue"][0]["diagnostics"]


def test_x_end_user_is_recorded_as_asserted_by_the_client(client, token_for, engine) -> None:
    _allow_end_user(engine, "demo-gp")
    before, _ = audit_state(engine)

    response = client.get("/fhir/ServiceRequest", headers=token_for("demo-gp", **{"X-End-User": "dr.jones"}))

    assert response.status_code == 200
    [event] = [e for e in new_entries(engine, before) if e["type"]["code"] == "rest"]
    user = next(a for a in event["agent"] if a["who"].get("identifier", {}).get("value") == "dr.jones")
    assert user["who"]["display"] == "asserted by client demo-gp"


def test_an_oversized_x_end_user_is_400(client, token_for, engine) -> None:
    _allow_end_user(engine, "demo-gp")
    response = client.get("/fhir/ServiceRequest", headers=token_for("demo-gp", **{"X-End-User": "u" * 500}))
    assert response.status_code == 400


def test_request_ids_in_the_audit_are_uuids_only(client, token_for, engine) -> None:
    before, _ = audit_state(engine)
    rid = str(uuid.uuid4())
    client.get("/fhir/ServiceRequest", headers=token_for("demo-gp", **{"X-Request-ID": rid}))
    events = new_entries(engine, before)
    assert rid in json.dumps(events)


# -- item 16: a whole-body deadline for slow senders -------------------------------------------


def test_a_body_trickled_past_the_deadline_is_408_and_audited(settings, engine, token_for, monkeypatch) -> None:
    import asyncio

    from gateway.app import create_app
    from gateway.demo import seed_directory

    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    app = create_app(settings.model_copy(update={"http_body_deadline": 0.5}), engine)
    seed_directory(engine, settings)
    before, _ = audit_state(engine)
    sent: list[dict[str, Any]] = []

    async def trickle() -> dict[str, Any]:
        await asyncio.sleep(0.2)  # each chunk well inside any idle timer; the whole body never ends
        return {"type": "http.request", "body": b" ", "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": MESSAGE,
        "raw_path": MESSAGE.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", FHIR_JSON.encode())]
        + [(k.lower().encode(), v.encode()) for k, v in token_for("demo-gp").items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "app": app,
    }

    async def run() -> None:
        await asyncio.wait_for(app(scope, trickle, send), timeout=10)

    asyncio.run(run())

    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 408
    assert any("408" in e.get("outcomeDesc", "") for e in new_entries(engine, before))
