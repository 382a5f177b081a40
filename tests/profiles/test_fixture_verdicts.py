"""Every public fixture gets the verdict tests/fixtures/fhir/SOURCES.md states for it.

The whole profile pipeline runs as the gateway runs it: structure (400), then the profile
rules on the dict (422). Nothing may raise anything but FhirError.
"""

from __future__ import annotations

import pytest

from profiles.consent_profile import check_consent
from profiles.jsonchecks import empty_values, json_types
from profiles.outcomes import FhirError, Issue
from profiles.referral import check_service_request, read_message
from profiles.structure import check_structure
from tests.profiles.fhir_files import FIXTURES, load

ANY_TYPE = {
    "Bundle",
    "ServiceRequest",
    "Consent",
    "Patient",
    "Observation",
    "OperationOutcome",
    "CapabilityStatement",
    "AuditEvent",
    "Organization",
    "Provenance",
}
NOT_SP = "not a social prescribing referral"


def verdict(resource: dict) -> tuple[int, list[Issue]]:
    """Returns (HTTP status, issues) as the pipeline would answer."""
    try:
        check_structure(resource, ANY_TYPE)
    except FhirError as error:
        return error.status, error.issues
    rt = resource["resourceType"]
    if rt == "Bundle":
        issues = read_message(resource)[1]
    elif rt == "ServiceRequest":
        issues = check_service_request(resource)
    elif rt == "Consent":
        issues = check_consent(resource)
    else:
        issues = empty_values(resource, rt) + json_types(resource, rt)
    return (422 if any(i.severity == "error" for i in issues) else 200), issues


def expressions(issues):
    return [i.expression for i in issues if i.severity == "error"]


def test_every_fixture_is_covered_here():
    names = {p.name for p in FIXTURES.glob("*.json")}
    covered = (
        set(REFUSED_SP) | set(UK_CORE_NOT_SP) | set(NOT_SUPPORTED) | set(STRUCTURE) | set(ACCEPTED) | set(CANCELLATIONS)
    )
    assert names == covered


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_no_fixture_raises_anything_but_fhir_error(name):
    status, issues = verdict(load(name))
    assert status in (200, 400, 422)
    assert all(isinstance(i, Issue) for i in issues)


# file -> (entry index of the ServiceRequest, entry index of the Patient with NHS number 3478526985)
REFUSED_SP = {
    "bars-servicerequest-validation-request.json": (1, 5),
    "bars-api_servicerequest-request_validation_message-bundle.json": (1, 5),
    "bars-ig_REFREQ03_referral-request_primary-care-to-community-pharmacy_bundle.json": (1, 6),
    "bars-ig_REFREQ06_referral-request_gp-to-pharmacy-bp-abpm_bundle.json": (1, 7),
    "bars-ig_REFREQ07_referral-request_gp-to-pharmacy-contraception_bundle.json": (1, 8),
}


@pytest.mark.parametrize(("name", "places"), sorted(REFUSED_SP.items()))
def test_bars_referrals_are_refused_naming_the_code_and_the_nhs_number(name, places):
    sr_at, patient_at = places
    status, issues = verdict(load(name))
    assert status == 422
    found = expressions(issues)
    assert f"Bundle.entry[{sr_at}].resource.code" in found
    assert f"Bundle.entry[{patient_at}].resource.identifier[0].value" in found
    code_issue = next(i for i in issues if i.expression == f"Bundle.entry[{sr_at}].resource.code")
    assert NOT_SP in code_issue.diagnostics
    nhs_issue = next(i for i in issues if i.expression.endswith("identifier[0].value"))
    assert "NHS number" in nhs_issue.diagnostics and "3478526985" not in nhs_issue.diagnostics


UK_CORE_NOT_SP = ["ukcore_servicerequest_colonoscopy-request.json", "ukcore_servicerequest_hip-replacement.json"]


@pytest.mark.parametrize("name", UK_CORE_NOT_SP)
def test_uk_core_service_requests_are_not_social_prescribing_referrals(name):
    status, issues = verdict(load(name))
    assert status == 422
    assert expressions(issues) == ["ServiceRequest.code", "ServiceRequest.subject.identifier"]
    assert NOT_SP in issues[0].diagnostics
    # with the Patient they reference, the NHS number is found and only the code is wrong
    with_patient = check_service_request(load(name), patient=load("ukcore_patient_richard-smith.json"))
    assert expressions(with_patient) == ["ServiceRequest.code"]


NOT_SUPPORTED = {
    "bars-booking-request.json": "booking-request",
    "bars-api_servicerequest-response_validation_message-bundle.json": "servicerequest-response",
    "bars-ig_REFRESP01_referral-response_dna-feedback_bundle.json": "servicerequest-response",
}


@pytest.mark.parametrize(("name", "event"), sorted(NOT_SUPPORTED.items()))
def test_other_message_events_are_not_supported(name, event):
    status, issues = verdict(load(name))
    assert status == 422
    (issue,) = issues
    assert (issue.code, issue.expression) == ("not-supported", "Bundle.entry[0].resource.eventCoding")
    assert event in issue.diagnostics


STRUCTURE = {
    "bars-111-to-ed-servicerequest.json": [
        "Bundle.entry[0].resource.destination[0].endpoint",
        "Bundle.entry[14].resource.basedOn",
        "Bundle.entry[15].resource.note",
        "Bundle.entry[18].resource.note",
        "Bundle.entry[19].resource.note",
        "Bundle.entry[20].resource.basedOn",
    ],
    "bars-servicerequest-read.json": ["ServiceRequest.basedOn", "ServiceRequest.PatientInstruction"],
    "bars-api_servicerequest_GET-success.json": ["ServiceRequest.basedOn", "ServiceRequest.PatientInstruction"],
    "bars-api_messagedefinition_servicerequest-request.json": ["Bundle.entry[0].resource.useContext[0].code"],
    "bars-messagedefinition-servicerequest-request.json": ["Bundle.entry[0].resource.useContext[0].code"],
}


@pytest.mark.parametrize(("name", "paths"), sorted(STRUCTURE.items()))
def test_structurally_invalid_examples_get_400_naming_every_error(name, paths):
    status, issues = verdict(load(name))
    assert status == 400
    assert [i.expression for i in issues] == paths


CANCELLATIONS = {
    "bars-ig_SERVREQ01_referral-cancel_revoked_bundle.json": "revoked",
    "bars-ig_SERVREQ02_referral-cancel_entered-in-error_bundle.json": "entered-in-error",
}


@pytest.mark.parametrize(("name", "status_code"), sorted(CANCELLATIONS.items()))
def test_bars_cancellations_are_read_as_cancellations_and_refused_for_the_nhs_number(name, status_code):
    bundle = load(name)
    message, issues = read_message(bundle)
    assert message is not None and message.kind == "cancel"
    assert message.service_request["status"] == status_code
    assert expressions(issues) == ["Bundle.entry[2].resource.identifier[0].value"]
    assert verdict(bundle)[0] == 422


ACCEPTED = {
    "sp-referral-message.json",
    "sp-servicerequest.json",
    "bars-ig_CONS01_consent_direct-care.json",
    "ukcore_consent_for-information-access.json",
    # reference resources: valid R4 that the gateway reads or mirrors, not referrals
    "bars-capabilitystatement.json",
    "bars-operationoutcome-422.json",
    "bars-api_operationoutcome_400-REC_BAD_REQUEST-required.json",
    "bars-api_operationoutcome_409-REC_CONFLICT-duplicate.json",
    "bars-ig_OBSV03_observation_blood-pressure.json",
    "ukcore_observation_npews-total-score.json",
    "ukcore_observation_heavy-drinker.json",
    "ukcore_auditevent_query.json",
    "ukcore_organization_white-rose-medical-centre.json",
    "ukcore_patient_richard-smith.json",
    "ukcore_provenance_ra-record-consent.json",
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_valid_examples_pass_with_no_error(name):
    status, issues = verdict(load(name))
    assert status == 200, issues
    assert expressions(issues) == []
