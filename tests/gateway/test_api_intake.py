"""Referral intake through the real HTTP interface: `POST /fhir/$process-message` and
`POST /fhir/ServiceRequest` accept valid social prescribing referrals, store them, and let them be
read, version-read and found again; every public fixture in tests/fixtures/fhir gets the verdict
SOURCES.md gives it, as a 4xx OperationOutcome naming every element at fault (never a 5xx).
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from email.utils import format_datetime
from typing import Any

import pytest

from tests.profiles.fhir_files import FIXTURES, load
from tests.profiles.gp_message import referral_bundle

FHIR_JSON = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
MESSAGE = "/fhir/$process-message"
BARS_NHS = "3478526985"  # every BaRS example patient's NHS number; fails Modulus 11
GP_A = "A81001"  # demo-gp's practice


def post(client, url: str, body: dict[str, Any], headers: dict[str, str]):
    return client.post(url, json=body, headers={**headers, "Content-Type": FHIR_JSON})


def error_expressions(outcome: dict[str, Any]) -> list[str]:
    return sorted(e for i in outcome["issue"] if i["severity"] in ("error", "fatal") for e in i.get("expression", []))


def cancellation(bundle: dict[str, Any], status: str = "revoked") -> dict[str, Any]:
    """Returns the referral message turned into a BaRS cancellation (reason update, status revoked/entered-in-error)."""
    out = copy.deepcopy(bundle)
    header = out["entry"][0]["resource"]
    header["reason"] = {"coding": [{"system": "https://fhir.nhs.uk/CodeSystem/message-reason-bars", "code": "update"}]}
    sr = next(e["resource"] for e in out["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    sr["status"] = status
    return out


def by_type(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}


# -- accepted referrals -------------------------------------------------------------------------


def test_sp_referral_message_is_stored_and_found_again_by_nhs_number(client, token_for) -> None:
    response = post(client, MESSAGE, load("sp-referral-message.json"), token_for("demo-gp"))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    answer = response.json()
    # The answer is a BaRS response message (issue 12 item 1): MessageHeader, then what was stored.
    assert (answer["resourceType"], answer["type"]) == ("Bundle", "message")
    assert [e["resource"]["resourceType"] for e in answer["entry"]] == [
        "MessageHeader",
        "ServiceRequest",
        "Task",
        "Patient",
    ]
    stored = by_type(answer)
    for entry in answer["entry"][1:]:
        resource = entry["resource"]
        assert entry["fullUrl"] == f"http://testserver/fhir/{resource['resourceType']}/{resource['id']}"
    assert stored["ServiceRequest"]["meta"]["versionId"] == "1"
    assert stored["ServiceRequest"]["subject"]["reference"] == f"Patient/{stored['Patient']['id']}"
    assert stored["Task"]["focus"]["reference"] == f"ServiceRequest/{stored['ServiceRequest']['id']}"

    found = client.get(
        "/fhir/ServiceRequest", params={"patient:identifier": f"{NHS}|9912003888"}, headers=token_for("demo-gp")
    )
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [stored["ServiceRequest"]["id"]]


def test_harness_style_referral_message_is_stored_and_found_again(client, token_for) -> None:
    bundle = referral_bundle("9990001006", GP_A, vcse_id="8VC01", ref_id="HARNESS-1", consent_to=["8VC01"])

    response = post(client, MESSAGE, bundle, token_for("demo-gp"))

    assert response.status_code == 200, response.text
    stored = by_type(response.json())
    assert set(stored) == {"MessageHeader", "ServiceRequest", "Patient", "Task"}
    assert stored["ServiceRequest"]["identifier"] == [
        {"system": "https://gp.example.nhs.uk/referrals", "value": "HARNESS-1"}
    ]
    assert stored["Patient"]["identifier"][0] == {"system": NHS, "value": "9990001006"}
    # references into the message (urn:uuid:) do not survive unpacking: they point at stored copies
    # (only the response's own MessageHeader, which is not stored, is named by a urn:uuid:)
    assert "urn:uuid:" not in json.dumps(response.json()["entry"][1:])
    found = client.get(
        "/fhir/ServiceRequest", params={"patient:identifier": f"{NHS}|9990001006"}, headers=token_for("demo-gp")
    )
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [stored["ServiceRequest"]["id"]]


def test_single_service_request_create_answers_201_with_location_and_etag(client, token_for) -> None:
    response = post(client, "/fhir/ServiceRequest", load("sp-servicerequest.json"), token_for("demo-gp"))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["resourceType"] == "ServiceRequest"
    assert body["id"] != "sp-referral-example"  # the server assigns the id
    assert body["meta"]["versionId"] == "1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"] == f"http://testserver/fhir/ServiceRequest/{body['id']}/_history/1"
    # an HTTP-date (RFC 9110 §5.6.7), the same second as meta.lastUpdated (issue 12 item 7)
    assert response.headers["last-modified"] == format_datetime(
        datetime.fromisoformat(body["meta"]["lastUpdated"].replace("Z", "+00:00")), usegmt=True
    )
    again = client.get(response.headers["location"], headers=token_for("demo-gp"))
    assert again.status_code == 200
    assert again.json() == body


def test_stored_referral_reads_with_etag_version_and_its_patient_and_history(client, token_for) -> None:
    headers = token_for("demo-gp")
    created = post(client, MESSAGE, load("sp-referral-message.json"), headers).json()
    sr = by_type(created)["ServiceRequest"]

    read = client.get(f"/fhir/ServiceRequest/{sr['id']}", headers=headers)
    assert read.status_code == 200
    assert read.headers["etag"] == 'W/"1"'
    assert read.json()["meta"]["versionId"] == "1"
    assert read.json()["code"]["coding"][0]["code"] == "871731000000106"

    patient = client.get(f"/fhir/{read.json()['subject']['reference']}", headers=headers)
    assert patient.status_code == 200
    assert patient.json()["resourceType"] == "Patient"
    assert {"system": NHS, "value": "9912003888"} in [
        {k: i[k] for k in ("system", "value")} for i in patient.json()["identifier"]
    ]

    history = client.get(f"/fhir/ServiceRequest/{sr['id']}/_history/1", headers=headers)
    assert history.status_code == 200
    assert history.headers["etag"] == 'W/"1"'
    assert history.json() == read.json()

    task = by_type(created)["Task"]
    assert client.get(f"/fhir/Task/{task['id']}", headers=headers).json()["basedOn"] == [
        {"reference": f"ServiceRequest/{sr['id']}"}
    ]


def test_vread_of_a_version_that_does_not_exist_is_404_and_a_non_number_is_400(client, token_for) -> None:
    headers = token_for("demo-gp")
    sr = post(client, "/fhir/ServiceRequest", load("sp-servicerequest.json"), headers).json()

    missing = client.get(f"/fhir/ServiceRequest/{sr['id']}/_history/2", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["issue"][0]["code"] == "not-found"
    bad = client.get(f"/fhir/ServiceRequest/{sr['id']}/_history/latest", headers=headers)
    assert bad.status_code == 400
    assert bad.json()["issue"][0]["expression"] == ["_history"]


def test_cancellation_message_revokes_a_held_referral_and_bumps_its_version(client, token_for) -> None:
    headers = token_for("demo-gp")
    bundle = referral_bundle("9990001014", GP_A, ref_id="TO-CANCEL")
    sr = by_type(post(client, MESSAGE, bundle, headers).json())["ServiceRequest"]

    response = post(client, MESSAGE, cancellation(bundle), token_for("demo-gp"))

    assert response.status_code == 200, response.text
    revoked = by_type(response.json())["ServiceRequest"]
    assert (revoked["id"], revoked["status"], revoked["meta"]["versionId"]) == (sr["id"], "revoked", "2")
    read = client.get(f"/fhir/ServiceRequest/{sr['id']}", headers=headers)
    assert read.headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/ServiceRequest/{sr['id']}/_history/1", headers=headers).json()["status"] == "active"


def test_cancellation_of_a_referral_the_gateway_does_not_hold_is_404_with_a_reason(client, token_for) -> None:
    bundle = cancellation(referral_bundle("9990001014", GP_A, ref_id="NEVER-SENT"), "entered-in-error")

    response = post(client, MESSAGE, bundle, token_for("demo-gp"))

    assert response.status_code == 404
    (issue,) = response.json()["issue"]
    assert issue["code"] == "not-found"
    assert "ServiceRequest.identifier" in issue["diagnostics"]


def test_message_sent_on_behalf_of_another_practice_is_403(client, token_for) -> None:
    bundle = referral_bundle("9990001006", "B82002", ref_id="NOT-MINE")

    response = post(client, MESSAGE, bundle, token_for("demo-gp"))

    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
    search = client.get("/fhir/ServiceRequest", params={"identifier": "NOT-MINE"}, headers=token_for("demo-gp"))
    assert "entry" not in search.json()


# -- every public fixture gets its SOURCES.md verdict through HTTP --------------------------------

NOT_SP = "not a social prescribing referral"
# file -> (HTTP status, FHIRPath of every error, sorted). Bundles go to $process-message, resources to /fhir/<type>.
VERDICTS: dict[str, tuple[int, list[str]]] = {
    "bars-111-to-ed-servicerequest.json": (
        400,
        [
            "Bundle.entry[0].resource.destination[0].endpoint",
            "Bundle.entry[14].resource.basedOn",
            "Bundle.entry[15].resource.note",
            "Bundle.entry[18].resource.note",
            "Bundle.entry[19].resource.note",
            "Bundle.entry[20].resource.basedOn",
        ],
    ),
    "bars-servicerequest-read.json": (400, ["ServiceRequest.PatientInstruction", "ServiceRequest.basedOn"]),
    "bars-api_servicerequest_GET-success.json": (400, ["ServiceRequest.PatientInstruction", "ServiceRequest.basedOn"]),
    "bars-api_messagedefinition_servicerequest-request.json": (400, ["Bundle.entry[0].resource.useContext[0].code"]),
    "bars-messagedefinition-servicerequest-request.json": (400, ["Bundle.entry[0].resource.useContext[0].code"]),
    # not social prescribing, and the patient's NHS number fails Modulus 11 (both named)
    "bars-servicerequest-validation-request.json": (
        422,
        [
            "Bundle.entry[1].resource.authoredOn",
            "Bundle.entry[1].resource.code",
            "Bundle.entry[5].resource.identifier[0].value",
        ],
    ),
    "bars-api_servicerequest-request_validation_message-bundle.json": (
        422,
        [
            "Bundle.entry[1].resource.authoredOn",
            "Bundle.entry[1].resource.code",
            "Bundle.entry[5].resource.identifier[0].value",
        ],
    ),
    "bars-ig_REFREQ03_referral-request_primary-care-to-community-pharmacy_bundle.json": (
        422,
        ["Bundle.entry[1].resource.code", "Bundle.entry[6].resource.identifier[0].value"],
    ),
    "bars-ig_REFREQ06_referral-request_gp-to-pharmacy-bp-abpm_bundle.json": (
        422,
        ["Bundle.entry[1].resource.code", "Bundle.entry[7].resource.identifier[0].value"],
    ),
    "bars-ig_REFREQ07_referral-request_gp-to-pharmacy-contraception_bundle.json": (
        422,
        ["Bundle.entry[1].resource.code", "Bundle.entry[8].resource.identifier[0].value"],
    ),
    "ukcore_servicerequest_colonoscopy-request.json": (
        422,
        ["ServiceRequest.code", "ServiceRequest.subject.identifier"],
    ),
    "ukcore_servicerequest_hip-replacement.json": (422, ["ServiceRequest.code", "ServiceRequest.subject.identifier"]),
    # other message events are not referrals
    "bars-booking-request.json": (422, ["Bundle.entry[0].resource.eventCoding"]),
    "bars-api_servicerequest-response_validation_message-bundle.json": (422, ["Bundle.entry[0].resource.eventCoding"]),
    "bars-ig_REFRESP01_referral-response_dna-feedback_bundle.json": (422, ["Bundle.entry[0].resource.eventCoding"]),
    # cancellations of a referral we do not hold: refused first for the patient's invalid NHS number (422)
    "bars-ig_SERVREQ01_referral-cancel_revoked_bundle.json": (422, ["Bundle.entry[2].resource.identifier[0].value"]),
    "bars-ig_SERVREQ02_referral-cancel_entered-in-error_bundle.json": (
        422,
        ["Bundle.entry[2].resource.identifier[0].value"],
    ),
    # Consents posted on their own must name the patient by NHS number (the examples reference a Patient only)
    "bars-ig_CONS01_consent_direct-care.json": (422, ["Consent.patient.identifier"]),
    "ukcore_consent_for-information-access.json": (422, ["Consent.patient.identifier"]),
    "sp-referral-message.json": (200, []),
    "sp-servicerequest.json": (201, []),
}
# Reference resources the gateway does not take in over FHIR REST: refused as not found (no such
# endpoint) or not supported (the endpoint serves reads only), whichever the surface says.
NOT_ACCEPTED_HERE = [
    "bars-capabilitystatement.json",
    "bars-operationoutcome-422.json",
    "bars-api_operationoutcome_400-REC_BAD_REQUEST-required.json",
    "bars-api_operationoutcome_409-REC_CONFLICT-duplicate.json",
    "ukcore_auditevent_query.json",
    "ukcore_organization_white-rose-medical-centre.json",
    "ukcore_provenance_ra-record-consent.json",
    "bars-ig_OBSV03_observation_blood-pressure.json",  # Observations arrive through the VCSE API
    "ukcore_observation_npews-total-score.json",
    "ukcore_observation_heavy-drinker.json",
    "ukcore_patient_richard-smith.json",  # Patients arrive inside referrals
]


def url_for(resource: dict[str, Any]) -> str:
    return MESSAGE if resource["resourceType"] == "Bundle" else f"/fhir/{resource['resourceType']}"


def test_every_fixture_has_an_http_verdict_here() -> None:
    assert {p.name for p in FIXTURES.glob("*.json")} == set(VERDICTS) | set(NOT_ACCEPTED_HERE)


@pytest.mark.parametrize(("name", "verdict"), sorted(VERDICTS.items()))
def test_fixture_gets_its_sources_md_verdict_over_http(client, token_for, name, verdict) -> None:
    status, expressions = verdict
    resource = load(name)

    response = post(client, url_for(resource), resource, token_for("demo-gp"))

    assert response.status_code == status, response.text
    body = response.json()
    if status >= 400:
        assert body["resourceType"] == "OperationOutcome"
        assert error_expressions(body) == expressions
        assert len([i for i in body["issue"] if i["severity"] == "error"]) == len(expressions)
        assert BARS_NHS not in response.text  # diagnostics never repeat a patient identifier
        for issue in body["issue"]:
            assert issue["diagnostics"] and issue["code"]
    else:
        assert body["resourceType"] in ("Bundle", "ServiceRequest")


@pytest.mark.parametrize(
    "name", ["bars-servicerequest-validation-request.json", "ukcore_servicerequest_hip-replacement.json"]
)
def test_not_social_prescribing_is_said_in_plain_words_on_the_code(client, token_for, name) -> None:
    resource = load(name)

    body = post(client, url_for(resource), resource, token_for("demo-gp")).json()

    code_issue = next(i for i in body["issue"] if i["expression"][0].endswith(".code"))
    assert NOT_SP in code_issue["diagnostics"]


def test_bars_referral_names_the_invalid_nhs_number_without_repeating_it(client, token_for) -> None:
    name = "bars-ig_REFREQ07_referral-request_gp-to-pharmacy-contraception_bundle.json"

    response = post(client, MESSAGE, load(name), token_for("demo-gp"))

    nhs_issue = next(
        i for i in response.json()["issue"] if i["expression"] == ["Bundle.entry[8].resource.identifier[0].value"]
    )
    assert "NHS number" in nhs_issue["diagnostics"]
    assert nhs_issue["details"]["coding"][0]["code"] == "REC_UNPROCESSABLE_ENTITY"


def test_reference_fixtures_are_refused_as_4xx_not_5xx(client, token_for) -> None:
    for name in NOT_ACCEPTED_HERE:
        resource = load(name)

        response = post(client, url_for(resource), resource, token_for("demo-gp"))

        assert response.status_code in (404, 405), name
        (issue,) = response.json()["issue"]
        assert issue["code"] == ("not-found" if response.status_code == 404 else "not-supported")


def test_bars_consent_with_the_patient_named_by_nhs_number_is_accepted(client, token_for) -> None:
    consent = load("bars-ig_CONS01_consent_direct-care.json")
    consent["patient"] = {"identifier": {"system": NHS, "value": "9912003888"}}

    response = post(client, "/fhir/Consent", consent, token_for("demo-gp"))

    assert response.status_code == 201, response.text
    assert response.headers["etag"] == 'W/"1"'
    assert response.json()["category"] == consent["category"]
