"""Every error leaves the FHIR API as an OperationOutcome with the right HTTP status, a plain-English
diagnostics, the FHIRPath of the element at fault where there is one, the BaRS error code, and
the caller's X-Request-ID / X-Correlation-ID; never a stack trace, never a 500 for bad input.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from tests.profiles.fhir_files import load
from tests.profiles.gp_message import referral_bundle

FHIR_JSON = "application/fhir+json"
MESSAGE = "/fhir/$process-message"
BARS_SYSTEMS = {"https://fhir.nhs.uk/codesystem/http-error-codes"}


def outcome(response, status: int, bars: str | None = None) -> list[dict[str, Any]]:
    """Asserts the response is a well-formed OperationOutcome with this status; returns its issues."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert "Traceback" not in response.text and 'File "' not in response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"]
    for issue in body["issue"]:
        assert issue["severity"] in ("fatal", "error", "warning", "information")
        assert issue["code"]
        assert issue["diagnostics"].strip()
        if "expression" in issue:
            assert all(isinstance(e, str) and e for e in issue["expression"])
        if bars is not None:
            (coding,) = issue["details"]["coding"]
            assert coding["system"].lower() in BARS_SYSTEMS
            assert coding["code"] == bars
    return body["issue"]


def only_issue(response, status: int, bars: str | None = None) -> dict[str, Any]:
    (issue,) = outcome(response, status, bars)
    return issue


def create(client, headers: dict[str, str], resource: dict[str, Any]):
    return client.post("/fhir/ServiceRequest", json=resource, headers={**headers, "Content-Type": FHIR_JSON})


def stored_referral(client, token_for) -> dict[str, Any]:
    response = create(client, token_for("demo-gp"), load("sp-servicerequest.json"))
    assert response.status_code == 201, response.text
    return response.json()


# -- 400: the body is not a FHIR resource we can read ---------------------------------------------


def test_malformed_json_is_400_structure(client, token_for) -> None:
    response = client.post(
        "/fhir/ServiceRequest",
        content=b'{"resourceType": "ServiceRequest",',
        headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON},
    )

    issue = only_issue(response, 400, "REC_BAD_REQUEST")
    assert issue["code"] == "structure"
    assert "not valid JSON" in issue["diagnostics"]


def test_json_that_is_not_an_object_is_400(client, token_for) -> None:
    for body in (b"[]", b'"ServiceRequest"', b"42", b"null"):
        response = client.post(MESSAGE, content=body, headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON})

        issue = only_issue(response, 400, "REC_BAD_REQUEST")
        assert "must be a JSON object" in issue["diagnostics"], body


def test_patient_posted_to_service_request_is_400_naming_resource_type(client, token_for) -> None:
    response = create(client, token_for("demo-gp"), load("ukcore_patient_richard-smith.json"))

    issue = only_issue(response, 400, "REC_BAD_REQUEST")
    assert issue["expression"] == ["resourceType"]
    assert "ServiceRequest" in issue["diagnostics"]


def test_non_bundle_posted_to_process_message_is_400(client, token_for) -> None:
    response = client.post(
        MESSAGE, json=load("sp-servicerequest.json"), headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON}
    )

    assert only_issue(response, 400)["expression"] == ["resourceType"]


# -- 413: too large ---------------------------------------------------------------------------------


def test_five_mib_body_is_413_against_the_default_one_mib_limit(client, token_for) -> None:
    huge = b'{"resourceType": "ServiceRequest", "note": [{"text": "' + b"x" * (5 << 20) + b'"}]}'

    response = client.post(MESSAGE, content=huge, headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON})

    issue = only_issue(response, 413, "REC_PAYLOAD_TOO_LARGE")
    assert issue["code"] == "too-costly"
    assert str(1 << 20) in issue["diagnostics"]


@pytest.fixture
def small_limit_client(settings, engine, app) -> Iterator[tuple[TestClient, int]]:
    """A second app on the same database whose body limit is exactly the size of sp-referral-message.json."""
    import orjson

    limit = len(orjson.dumps(load("sp-referral-message.json")))
    small = create_app(settings.model_copy(update={"max_body_bytes": limit}), engine)
    with TestClient(small, base_url="http://testserver") as test_client:
        yield test_client, limit


def test_body_limit_comes_from_settings_and_a_body_at_the_limit_is_accepted(small_limit_client, token_for) -> None:
    import orjson

    client, limit = small_limit_client
    body = orjson.dumps(load("sp-referral-message.json"))
    headers = {**token_for("demo-gp"), "Content-Type": FHIR_JSON}

    too_big = client.post(MESSAGE, content=body + b" ", headers=headers)
    only_issue(too_big, 413)
    assert str(limit) in too_big.json()["issue"][0]["diagnostics"]
    assert too_big.headers["x-request-id"] == headers["X-Request-ID"]
    at_limit = client.post(MESSAGE, content=body, headers=headers)
    assert at_limit.status_code == 200, at_limit.text


def test_streamed_body_without_content_length_is_cut_off_at_the_limit(small_limit_client, token_for) -> None:
    client, limit = small_limit_client

    def chunks() -> Iterator[bytes]:
        yield b'{"resourceType": "Bundle", "type": "message", "entry": ['
        yield b" " * limit
        yield b"]}"

    response = client.post(MESSAGE, content=chunks(), headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON})

    assert "content-length" not in response.request.headers
    only_issue(response, 413)


# -- 415: not FHIR JSON -----------------------------------------------------------------------------


def test_wrong_content_type_is_415(client, token_for) -> None:
    for content_type in ("text/plain", "application/fhir+xml", "application/x-www-form-urlencoded", None):
        headers = token_for("demo-gp")
        if content_type:
            headers["Content-Type"] = content_type

        response = client.post(MESSAGE, content=b'{"resourceType": "Bundle"}', headers=headers)

        issue = only_issue(response, 415, "REC_UNSUPPORTED_MEDIA_TYPE")
        assert issue["code"] == "not-supported"
        assert FHIR_JSON in issue["diagnostics"]


def test_fhir_json_with_a_charset_parameter_is_accepted(client, token_for) -> None:
    response = client.post(
        "/fhir/ServiceRequest",
        json=load("sp-servicerequest.json"),
        headers={**token_for("demo-gp"), "Content-Type": "application/fhir+json; charset=utf-8"},
    )

    assert response.status_code == 201, response.text


# -- 422: valid FHIR, not a valid social prescribing referral ---------------------------------------


def _with(**changes: Any) -> dict[str, Any]:
    sr = load("sp-servicerequest.json")
    for key, value in changes.items():
        if value is None:
            del sr[key]
        else:
            sr[key] = value
    return sr


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        (
            _with(subject={"identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9912003889"}}),
            "ServiceRequest.subject.identifier.value",
        ),
        (_with(status="banana"), "ServiceRequest.status"),
        (_with(authoredOn=None), "ServiceRequest.authoredOn"),
    ],
    ids=["invalid-nhs-number", "status-banana", "no-authoredOn"],
)
def test_profile_failure_is_422_naming_the_element(client, token_for, resource, expression) -> None:
    response = create(client, token_for("demo-gp"), resource)

    issues = outcome(response, 422, "REC_UNPROCESSABLE_ENTITY")
    errors = [i for i in issues if i["severity"] == "error"]
    assert [i["expression"] for i in errors] == [[expression]]
    assert "9912003889" not in response.text
    search = client.get("/fhir/ServiceRequest", headers=token_for("demo-gp"))
    assert "entry" not in search.json()  # nothing was stored (and no empty array: issue 12 item 6)


def test_profile_failure_names_every_element_at_fault_at_once(client, token_for) -> None:
    response = create(client, token_for("demo-gp"), _with(status="banana", authoredOn=None))

    errors = [i for i in outcome(response, 422) if i["severity"] == "error"]
    assert sorted(e for i in errors for e in i["expression"]) == ["ServiceRequest.authoredOn", "ServiceRequest.status"]


# -- 404, 405, 412 ----------------------------------------------------------------------------------


def test_unknown_id_is_404(client, token_for) -> None:
    for path in ("/fhir/ServiceRequest/no-such-id", "/fhir/Patient/no-such-id", "/fhir/Task/x/_history/1"):
        issue = only_issue(client.get(path, headers=token_for("demo-gp")), 404, "REC_NOT_FOUND")

        assert issue["code"] == "not-found"
        assert "is not known" in issue["diagnostics"], path


def test_unknown_resource_type_is_404(client, token_for) -> None:
    only_issue(client.get("/fhir/Encounter/1", headers=token_for("demo-gp")), 404)


def test_delete_is_405_with_allow_header(client, token_for) -> None:
    sr = stored_referral(client, token_for)

    response = client.delete(f"/fhir/ServiceRequest/{sr['id']}", headers=token_for("demo-gp"))

    issue = only_issue(response, 405, "REC_METHOD_NOT_ALLOWED")
    assert issue["code"] == "not-supported"
    assert "DELETE" in issue["diagnostics"]
    assert "DELETE" not in response.headers["allow"]
    assert client.get(f"/fhir/ServiceRequest/{sr['id']}", headers=token_for("demo-gp")).status_code == 200


def test_if_match_naming_an_old_version_is_412_and_changes_nothing(client, token_for) -> None:
    sr = stored_referral(client, token_for)
    cancelled = {**sr, "status": "revoked"}

    response = client.put(
        f"/fhir/ServiceRequest/{sr['id']}",
        json=cancelled,
        headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON, "If-Match": 'W/"7"'},
    )

    issue = only_issue(response, 412, "REC_PRECONDITION_FAILED")
    assert issue["code"] == "conflict"
    read = client.get(f"/fhir/ServiceRequest/{sr['id']}", headers=token_for("demo-gp"))
    assert (read.headers["etag"], read.json()["status"]) == ('W/"1"', "active")


def test_if_match_naming_the_current_version_cancels_and_answers_the_new_etag(client, token_for) -> None:
    sr = stored_referral(client, token_for)

    response = client.put(
        f"/fhir/ServiceRequest/{sr['id']}",
        json={**sr, "status": "revoked"},
        headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON, "If-Match": 'W/"1"'},
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == 'W/"2"'
    assert response.json()["status"] == "revoked"


def test_unreadable_if_match_is_400(client, token_for) -> None:
    sr = stored_referral(client, token_for)

    response = client.put(
        f"/fhir/ServiceRequest/{sr['id']}",
        json={**sr, "status": "revoked"},
        headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON, "If-Match": "latest"},
    )

    assert only_issue(response, 400)["expression"] == ["If-Match"]


def test_put_changing_more_than_status_is_422_naming_each_changed_element(client, token_for) -> None:
    sr = stored_referral(client, token_for)
    changed = {**sr, "status": "revoked", "priority": "urgent", "note": [{"text": "changed"}]}

    response = client.put(
        f"/fhir/ServiceRequest/{sr['id']}", json=changed, headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON}
    )

    expressions = sorted(e for i in outcome(response, 422) for e in i["expression"])
    assert expressions == ["ServiceRequest.note", "ServiceRequest.priority"]


# -- 400 on search ----------------------------------------------------------------------------------


def test_unknown_search_parameter_is_400_naming_it_and_the_supported_ones(client, token_for) -> None:
    response = client.get("/fhir/ServiceRequest", params={"colour": "blue"}, headers=token_for("demo-gp"))

    issue = only_issue(response, 400, "REC_BAD_REQUEST")
    assert issue["expression"] == ["colour"]
    assert "patient:identifier" in issue["diagnostics"]


def test_bad_date_is_400_naming_the_parameter(client, token_for) -> None:
    # 9999-12-31 and le9999 end past the last representable instant (once a 500: OverflowError)
    for value in ("2026-13-01", "yesterday", "xx2026-01-01", "ge2026-1", "9999-12-31", "le9999"):
        response = client.get("/fhir/ServiceRequest", params={"authored": value}, headers=token_for("demo-gp"))

        assert only_issue(response, 400)["expression"] == ["authored"], value


# -- BaRS headers on $process-message ---------------------------------------------------------------


def test_process_message_without_x_request_id_is_400_rec_bad_request(client, token_for) -> None:
    headers = {k: v for k, v in token_for("demo-gp").items() if k != "X-Request-ID"}

    response = client.post(
        MESSAGE, json=referral_bundle("9990001006", "A81001"), headers={**headers, "Content-Type": FHIR_JSON}
    )

    issue = only_issue(response, 400, "REC_BAD_REQUEST")
    assert (issue["code"], issue["expression"]) == ("required", ["X-Request-ID"])
    search = client.get("/fhir/ServiceRequest", headers=token_for("demo-gp"))
    assert "entry" not in search.json()


def test_process_message_without_x_correlation_id_is_400(client, token_for) -> None:
    headers = {k: v for k, v in token_for("demo-gp").items() if k != "X-Correlation-ID"}

    response = client.post(
        MESSAGE, json=referral_bundle("9990001006", "A81001"), headers={**headers, "Content-Type": FHIR_JSON}
    )

    issue = only_issue(response, 400, "REC_BAD_REQUEST")
    assert (issue["code"], issue["expression"]) == ("required", ["X-Correlation-ID"])


# -- auth errors are OperationOutcomes too ----------------------------------------------------------


def test_no_token_is_401_with_www_authenticate(client) -> None:
    response = client.get("/fhir/ServiceRequest")

    assert only_issue(response, 401, "REC_UNAUTHORIZED")["code"] == "login"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_vcse_token_cannot_create_a_referral_403(client, token_for) -> None:
    response = create(client, token_for("demo-vcse"), load("sp-servicerequest.json"))

    assert only_issue(response, 403, "REC_FORBIDDEN")["code"] == "forbidden"


# -- ids echoed, internals never shown ----------------------------------------------------------------


def test_trace_ids_are_echoed_on_error_responses(client, token_for) -> None:
    headers = token_for("demo-gp")

    response = client.get("/fhir/ServiceRequest/nope", headers=headers)

    assert response.status_code == 404
    assert response.headers["x-request-id"] == headers["X-Request-ID"]
    assert response.headers["x-correlation-id"] == headers["X-Correlation-ID"]


def test_unexpected_fault_is_a_500_outcome_that_reveals_nothing(app, token_for, monkeypatch) -> None:
    from gateway.pipeline import referrals

    def explode(ctx, sr):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internal detail 9912003888")

    monkeypatch.setattr(referrals, "accept_service_request", explode)
    headers = {**token_for("demo-gp"), "Content-Type": FHIR_JSON}
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as client:
        response = client.post("/fhir/ServiceRequest", json=load("sp-servicerequest.json"), headers=headers)

    issue = only_issue(response, 500, "REC_SERVER_ERROR")
    assert issue["code"] == "exception"
    assert "secret" not in response.text and "9912003888" not in response.text and "RuntimeError" not in response.text
    assert response.headers["x-request-id"] == headers["X-Request-ID"]
