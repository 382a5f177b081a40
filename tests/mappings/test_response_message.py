"""The BaRS response message, shaped without a server (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from mappings.response_message import request_header_id, response_message

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
BASE = "https://gw.example"


def request(header_id: str | None = None, full_url: str = "urn:uuid:8f0e1c1e-2f8a-4f5b-9d0f-4a0f2a1c9b11") -> dict:
    header = {
        "resourceType": "MessageHeader",
        "source": {"endpoint": "https://fhir.nhs.uk/Id/ods-organization-code|A81001", "name": "Practice A"},
        "reason": {"coding": [{"code": "new"}]},
    }
    if header_id:
        header["id"] = header_id
    return {"resourceType": "Bundle", "type": "message", "entry": [{"fullUrl": full_url, "resource": header}]}


def test_the_request_is_named_by_its_header_id_else_by_its_urn_uuid() -> None:
    assert request_header_id(request("hdr-1")) == "hdr-1"
    assert request_header_id(request()) == "8f0e1c1e-2f8a-4f5b-9d0f-4a0f2a1c9b11"
    assert request_header_id(request(full_url="https://elsewhere/MessageHeader/a b")) is None
    assert request_header_id({"resourceType": "Bundle"}) is None


def test_the_response_names_the_request_focuses_on_the_stored_resources_and_goes_back_to_the_sender() -> None:
    stored = [
        {"resourceType": "ServiceRequest", "id": "sr1"},
        {"resourceType": "Task", "id": "t1"},
        {"resourceType": "Patient", "id": "p1"},
    ]
    bundle = response_message(request=request("hdr-1"), code="ok", resources=stored, base_url=BASE, now=NOW)

    assert (bundle["type"], bundle["timestamp"]) == ("message", "2026-12-02T10:00:00+00:00")
    header = bundle["entry"][0]["resource"]
    assert header["response"] == {"identifier": "hdr-1", "code": "ok"}
    assert header["eventCoding"]["code"] == "servicerequest-response"
    assert header["focus"] == [{"reference": f"{BASE}/fhir/ServiceRequest/sr1"}, {"reference": f"{BASE}/fhir/Task/t1"}]
    assert header["destination"] == [
        {"endpoint": "https://fhir.nhs.uk/Id/ods-organization-code|A81001", "name": "Practice A"}
    ]
    assert header["reason"] == {"coding": [{"code": "new"}]}
    assert [e["fullUrl"] for e in bundle["entry"][1:]] == [
        f"{BASE}/fhir/ServiceRequest/sr1",
        f"{BASE}/fhir/Task/t1",
        f"{BASE}/fhir/Patient/p1",
    ]


def test_an_error_code_and_nothing_to_focus_on_leave_no_empty_focus() -> None:
    bundle = response_message(request=request(), code="fatal-error", resources=[], base_url=BASE, now=NOW)

    header = bundle["entry"][0]["resource"]
    assert header["response"]["code"] == "fatal-error"
    assert "focus" not in header and len(bundle["entry"]) == 1
