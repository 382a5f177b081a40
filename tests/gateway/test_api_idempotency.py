"""Idempotency and tracing as the NHS API platform and BaRS use them: X-Request-ID (per client) is the
idempotency key, a retry replays the first answer and stores nothing, a reused id with another body
and a referral sent twice are 409 REC_CONFLICT, and both trace ids are echoed on every response.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.profiles.fhir_files import load
from tests.profiles.gp_message import referral_bundle

FHIR_JSON = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
MESSAGE = "/fhir/$process-message"
REPLAY = "x-idempotent-replay"


def post(client, url: str, body: dict[str, Any], headers: dict[str, str]):
    return client.post(url, json=body, headers={**headers, "Content-Type": FHIR_JSON})


def referrals_for(client, headers: dict[str, str], nhs: str) -> list[str]:
    response = client.get("/fhir/ServiceRequest", params={"patient:identifier": f"{NHS}|{nhs}"}, headers=headers)
    assert response.status_code == 200
    return [e["resource"]["id"] for e in response.json().get("entry", [])]


def ids(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]]


def test_message_retry_with_same_request_id_and_body_replays_the_first_answer(client, token_for) -> None:
    headers = token_for("demo-gp")
    bundle = referral_bundle("9990001006", "A81001", ref_id="RETRY-1")
    first = post(client, MESSAGE, bundle, headers)
    assert first.status_code == 200, first.text
    assert REPLAY not in first.headers
    before = referrals_for(client, token_for("demo-gp"), "9990001006")

    retry = post(client, MESSAGE, bundle, headers)

    assert retry.status_code == 200, retry.text
    assert retry.headers[REPLAY] == "true"
    assert retry.headers["content-type"].startswith(FHIR_JSON)
    assert ids(retry.json()) == ids(first.json())
    assert retry.json() == first.json()
    assert referrals_for(client, token_for("demo-gp"), "9990001006") == before
    assert len(before) == 1


def test_rest_create_retry_replays_201_with_the_same_location(client, token_for) -> None:
    headers = token_for("demo-gp")
    first = post(client, "/fhir/ServiceRequest", load("sp-servicerequest.json"), headers)
    assert first.status_code == 201, first.text

    retry = post(client, "/fhir/ServiceRequest", load("sp-servicerequest.json"), headers)

    assert retry.status_code == 201
    assert retry.headers[REPLAY] == "true"
    assert retry.headers["location"] == first.headers["location"]
    assert retry.json()["id"] == first.json()["id"]
    assert referrals_for(client, token_for("demo-gp"), "9912003888") == [first.json()["id"]]


def test_same_request_id_with_a_different_body_is_409_duplicate(client, token_for) -> None:
    headers = token_for("demo-gp")
    assert post(client, MESSAGE, referral_bundle("9990001006", "A81001", ref_id="A"), headers).status_code == 200

    response = post(client, MESSAGE, referral_bundle("9990001014", "A81001", ref_id="B"), headers)

    assert response.status_code == 409
    (issue,) = response.json()["issue"]
    assert issue["code"] == "duplicate"
    assert issue["details"]["coding"][0]["code"] == "REC_CONFLICT"
    assert headers["X-Request-ID"] in issue["diagnostics"]
    assert referrals_for(client, token_for("demo-gp"), "9990001014") == []


def test_same_referral_with_a_new_request_id_is_409_naming_the_stored_service_request(client, token_for) -> None:
    bundle = referral_bundle("9990001006", "A81001", ref_id="ONCE-ONLY")
    first = post(client, MESSAGE, bundle, token_for("demo-gp"))
    sr_id = next(rid for rtype, rid in ids(first.json()) if rtype == "ServiceRequest")

    again = post(client, MESSAGE, bundle, token_for("demo-gp"))  # token_for gives a fresh X-Request-ID

    assert again.status_code == 409
    (issue,) = again.json()["issue"]
    assert (issue["code"], issue["details"]["coding"][0]["code"]) == ("duplicate", "REC_CONFLICT")
    assert f"ServiceRequest/{sr_id}" in issue["diagnostics"]
    assert REPLAY not in again.headers
    assert referrals_for(client, token_for("demo-gp"), "9990001006") == [sr_id]


def test_same_referral_posted_as_a_rest_create_after_the_message_is_409(client, token_for) -> None:
    first = post(client, MESSAGE, load("sp-referral-message.json"), token_for("demo-gp"))
    sr_id = next(rid for rtype, rid in ids(first.json()) if rtype == "ServiceRequest")

    again = post(client, "/fhir/ServiceRequest", load("sp-servicerequest.json"), token_for("demo-gp"))

    assert again.status_code == 409
    assert f"ServiceRequest/{sr_id}" in again.json()["issue"][0]["diagnostics"]


def test_a_refused_request_does_not_use_up_its_request_id(client, token_for) -> None:
    headers = token_for("demo-gp")
    bad = referral_bundle("9990001007", "A81001", ref_id="FIXED")  # fails Modulus 11
    assert post(client, MESSAGE, bad, headers).status_code == 422

    fixed = post(client, MESSAGE, referral_bundle("9990001006", "A81001", ref_id="FIXED"), headers)

    assert fixed.status_code == 200, fixed.text
    assert REPLAY not in fixed.headers


def test_request_ids_are_per_client_so_another_client_never_gets_a_replay(client, token_for) -> None:
    shared = str(uuid.uuid4())
    first = post(
        client, MESSAGE, referral_bundle("9990001006", "A81001"), token_for("demo-gp", **{"X-Request-ID": shared})
    )
    assert first.status_code == 200

    other = post(
        client, MESSAGE, referral_bundle("9990001006", "B82002"), token_for("demo-gp-b", **{"X-Request-ID": shared})
    )

    assert other.status_code == 200, other.text
    assert REPLAY not in other.headers
    assert set(ids(other.json())).isdisjoint(ids(first.json()))


def test_trace_ids_are_echoed_on_success(client, token_for) -> None:
    headers = token_for("demo-gp")

    response = post(client, MESSAGE, referral_bundle("9990001006", "A81001"), headers)

    assert response.status_code == 200
    assert response.headers["x-request-id"] == headers["X-Request-ID"]
    assert response.headers["x-correlation-id"] == headers["X-Correlation-ID"]


def test_trace_ids_are_echoed_on_a_refused_message_and_on_a_replay(client, token_for) -> None:
    headers, other = token_for("demo-gp"), token_for("demo-gp")
    bundle = referral_bundle("9990001006", "A81001")
    post(client, MESSAGE, bundle, headers)

    replay = post(client, MESSAGE, bundle, headers)
    reused = post(client, MESSAGE, load("bars-booking-request.json"), headers)
    refused = post(client, MESSAGE, load("bars-booking-request.json"), other)

    for response, status, sent in ((replay, 200, headers), (reused, 409, headers), (refused, 422, other)):
        assert response.status_code == status
        assert response.headers["x-request-id"] == sent["X-Request-ID"]
        assert response.headers["x-correlation-id"] == sent["X-Correlation-ID"]


def test_a_request_id_is_made_up_and_returned_when_a_rest_call_sends_none(client, token_for) -> None:
    headers = {k: v for k, v in token_for("demo-gp").items() if k not in ("X-Request-ID", "X-Correlation-ID")}

    response = client.get("/fhir/ServiceRequest", headers=headers)

    assert response.status_code == 200
    assert uuid.UUID(response.headers["x-request-id"])
    assert "x-correlation-id" not in response.headers
