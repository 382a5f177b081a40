"""The social prescribing referral profile (ServiceRequest) and reading the message that carries it."""

from __future__ import annotations

import pytest

from profiles.referral import ReferralMessage, check_service_request, read_message
from profiles.systems import NHS_NUMBER, ODS_CODE, VCSE_ORG_ID
from tests.profiles.fhir_files import entry_index, load
from tests.profiles.gp_message import referral_bundle


def errors(issues):
    return [i for i in issues if i.severity == "error"]


def where(issues):
    return [(i.code, i.expression) for i in errors(issues)]


# A valid NHS number in the 999 test range: 9*10 + 9*9 + 9*8 + 0 + 0 + 0 + 1*4 + 1*3 + 1*2 = 252;
# 252 % 11 = 10; 11 - 10 = 1, so the check digit is 1.
VALID_TEST_NHS = "9990001111"


def test_the_test_range_number_used_here_is_worked_out_correctly():
    body = VALID_TEST_NHS[:9]
    assert sum(int(d) * w for d, w in zip(body, range(10, 1, -1), strict=True)) == 252
    assert int(VALID_TEST_NHS[9]) == 11 - 252 % 11


def sr_example():
    return load("sp-servicerequest.json")


def message_example():
    return load("sp-referral-message.json")


# --- our valid examples ------------------------------------------------------------------


def test_example_service_request_passes_with_no_issue():
    assert check_service_request(sr_example()) == []


def test_example_message_is_read_with_no_issue():
    message, issues = read_message(message_example())
    assert issues == []
    assert isinstance(message, ReferralMessage)
    assert message.kind == "new"
    assert message.nhs_number == "9912003888"
    assert message.sender_ods == "A81001"
    assert message.service_request["code"]["coding"][0]["code"] == "871731000000106"
    assert message.service_request_full_url == message_example()["entry"][1]["fullUrl"]
    assert message.header["resourceType"] == "MessageHeader"
    assert message.patient["name"][0]["given"] == ["Maureen"]
    assert [o["name"] for o in message.organizations] == [
        "Ashfield Surgery",
        "Social prescribing service",
        "Lincoln Befriending Network",
    ]
    assert sorted(p["resourceType"] for p in message.practitioners) == ["Practitioner", "PractitionerRole"]
    assert len(message.consents) == len(message.questionnaire_responses) == len(message.flags) == 1
    assert message.warnings == []


# --- targeted breaks of the ServiceRequest -----------------------------------------------


@pytest.mark.parametrize(
    ("change", "code", "expression"),
    [
        ({"status": "banana"}, "code-invalid", "ServiceRequest.status"),
        ({"status": "draft"}, "business-rule", "ServiceRequest.status"),
        ({"status": "revoked"}, "business-rule", "ServiceRequest.status"),
        ({"intent": "proposal"}, "business-rule", "ServiceRequest.intent"),
        ({"intent": "wish"}, "code-invalid", "ServiceRequest.intent"),
        ({"priority": "soon"}, "code-invalid", "ServiceRequest.priority"),
        ({"authoredOn": None}, "required", "ServiceRequest.authoredOn"),
        ({"requester": None}, "required", "ServiceRequest.requester"),
        ({"requester": {"display": "Dr Patel"}}, "required", "ServiceRequest.requester"),
        ({"doNotPerform": True}, "business-rule", "ServiceRequest.doNotPerform"),
        ({"note": [{"text": ""}]}, "invalid", "ServiceRequest.note[0].text"),
        ({"category": []}, "invalid", "ServiceRequest.category"),
        (
            {
                "subject": {
                    "reference": "Group/lonely-hearts",
                    "identifier": {"system": NHS_NUMBER, "value": "9912003888"},
                }
            },
            "invalid",
            "ServiceRequest.subject",
        ),
        ({"subject": {"reference": "Patient/1"}}, "required", "ServiceRequest.subject.identifier"),
        ({"subject": None}, "required", "ServiceRequest.subject"),
    ],
)
def test_each_break_is_named(change, code, expression):
    sr = sr_example()
    for key, value in change.items():
        if value is None:
            del sr[key]
        else:
            sr[key] = value
    assert where(check_service_request(sr)) == [(code, expression)]


def test_status_outside_the_binding_says_so():
    sr = sr_example()
    sr["status"] = "banana"
    (issue,) = check_service_request(sr)
    assert "not a valid ServiceRequest status" in issue.diagnostics


@pytest.mark.parametrize("number", ["3478526985", "991200388", "99120038AB"])
def test_bad_nhs_number_on_subject_is_named(number):
    sr = sr_example()
    sr["subject"]["identifier"]["value"] = number
    (issue,) = check_service_request(sr)
    assert (issue.code, issue.expression) == ("value", "ServiceRequest.subject.identifier.value")
    assert number not in issue.diagnostics


def test_nhs_number_may_come_from_the_referenced_patient_only():
    sr = sr_example()
    sr["subject"] = {"reference": "Patient/UKCore-Patient-RichardSmith-Example"}
    assert check_service_request(sr, patient=load("ukcore_patient_richard-smith.json")) == []


def test_patient_nhs_number_disagreeing_with_subject_identifier_is_named():
    sr = sr_example()
    sr["subject"]["identifier"]["value"] = VALID_TEST_NHS
    issues = check_service_request(sr, patient=load("ukcore_patient_richard-smith.json"), patient_path="Patient")
    assert where(issues) == [("business-rule", "ServiceRequest.subject.identifier.value")]
    assert "does not match" in issues[0].diagnostics


def test_invalid_patient_nhs_number_is_named_at_the_patient():
    sr = sr_example()
    del sr["subject"]["identifier"]
    sr["subject"]["reference"] = "Patient/p1"
    patient = {"resourceType": "Patient", "id": "p1", "identifier": [{"system": NHS_NUMBER, "value": "3478526985"}]}
    issues = check_service_request(sr, "Bundle.entry[1].resource", patient, patient_path="Bundle.entry[2].resource")
    assert where(issues) == [("value", "Bundle.entry[2].resource.identifier[0].value")]


@pytest.mark.parametrize(
    ("field", "value", "expression"),
    [
        (
            "requester",
            {"identifier": {"system": ODS_CODE, "value": "a81001"}},
            "ServiceRequest.requester.identifier.value",
        ),
        ("requester", {"identifier": {"system": ODS_CODE, "value": "A8"}}, "ServiceRequest.requester.identifier.value"),
        (
            "performer",
            [{"identifier": {"system": ODS_CODE, "value": "U-12345"}}],
            "ServiceRequest.performer[0].identifier.value",
        ),
        (
            "performer",
            [{"identifier": {"system": ODS_CODE, "value": "ABCDEFGHIJK"}}],
            "ServiceRequest.performer[0].identifier.value",
        ),
    ],
)
def test_bad_ods_code_shape_is_named(field, value, expression):
    sr = sr_example()
    sr[field] = value
    assert where(check_service_request(sr)) == [("value", expression)]


def test_performer_identified_by_another_system_is_refused():
    sr = sr_example()
    sr["performer"] = [{"identifier": {"system": "https://fhir.nhs.uk/Id/dos-service-id", "value": "111111111"}}]
    assert where(check_service_request(sr)) == [("code-invalid", "ServiceRequest.performer[0].identifier.system")]


def test_performer_may_be_a_vcse_id_or_absent():
    sr = sr_example()
    sr["performer"] = [{"identifier": {"system": VCSE_ORG_ID, "value": "lincoln-befriending"}}]
    assert check_service_request(sr) == []
    del sr["performer"]
    assert check_service_request(sr) == []


def test_intent_order_and_plan_are_both_accepted():
    sr = sr_example()
    for intent in ("order", "plan"):
        sr["intent"] = intent
        assert check_service_request(sr) == []


def test_code_from_another_service_is_not_a_social_prescribing_referral():
    sr = sr_example()
    sr["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "73761001", "display": "Colonoscopy"}]}
    (issue,) = check_service_request(sr)
    assert (issue.code, issue.expression) == ("code-invalid", "ServiceRequest.code")
    assert "not a social prescribing referral" in issue.diagnostics


def test_social_prescribing_code_under_the_wrong_system_names_the_system():
    sr = sr_example()
    sr["code"]["coding"][0]["system"] = "http://snomed.info/sct/"
    (issue,) = check_service_request(sr)
    assert issue.expression == "ServiceRequest.code.coding[0].system"
    assert "http://snomed.info/sct" in issue.diagnostics


def test_social_prescribing_coding_may_sit_beside_others():
    sr = sr_example()
    sr["code"]["coding"].insert(0, {"system": "https://example.org/local-codes", "code": "SP"})
    assert check_service_request(sr) == []


def test_missing_code_is_named():
    sr = sr_example()
    del sr["code"]
    (issue,) = check_service_request(sr)
    assert (issue.code, issue.expression) == ("required", "ServiceRequest.code")
    assert "not a social prescribing referral" in issue.diagnostics


def test_bars_category_must_be_referral_or_validation():
    sr = sr_example()
    sr["category"][0]["coding"][0]["code"] = "booking"
    assert where(check_service_request(sr)) == [("code-invalid", "ServiceRequest.category[0].coding[0].code")]


def test_bars_use_case_is_accepted_unless_a_list_is_configured():
    sr = sr_example()
    sr["category"][0]["coding"].append(
        {"system": "https://fhir.nhs.uk/CodeSystem/usecases-categories-bars", "code": "a9t9"}
    )
    assert check_service_request(sr) == []
    assert where(check_service_request(sr, use_cases={"a9t1"})) == [
        ("code-invalid", "ServiceRequest.category[0].coding[1].code")
    ]
    assert check_service_request(sr, use_cases={"a9t9"}) == []


def test_unknown_profile_is_a_warning_not_an_error():
    sr = sr_example()
    sr["meta"]["profile"].append("https://example.org/StructureDefinition/SomethingElse")
    (issue,) = check_service_request(sr)
    assert (issue.severity, issue.expression) == ("warning", "ServiceRequest.meta.profile[1]")


def test_cancellation_needs_revoked_or_entered_in_error_but_not_code_requester_or_date():
    sr = sr_example()
    for name in ("code", "requester", "authoredOn"):
        del sr[name]
    for status in ("revoked", "entered-in-error"):
        sr["status"] = status
        assert check_service_request(sr, for_cancel=True) == []
    sr["status"] = "active"
    assert where(check_service_request(sr, for_cancel=True)) == [("business-rule", "ServiceRequest.status")]


def test_several_faults_are_all_reported():
    sr = sr_example()
    sr["status"] = "banana"
    sr["intent"] = "proposal"
    del sr["authoredOn"]
    del sr["requester"]
    sr["subject"]["identifier"]["value"] = "3478526985"
    sr["code"]["coding"][0]["code"] = "73761001"
    sr["note"] = [{"text": "  "}]
    sr["performer"] = [{"identifier": {"system": ODS_CODE, "value": "u12345"}}]
    assert where(check_service_request(sr)) == [
        ("code-invalid", "ServiceRequest.status"),
        ("business-rule", "ServiceRequest.intent"),
        ("code-invalid", "ServiceRequest.code"),
        ("value", "ServiceRequest.subject.identifier.value"),
        ("required", "ServiceRequest.requester"),
        ("required", "ServiceRequest.authoredOn"),
        ("value", "ServiceRequest.performer[0].identifier.value"),
        ("invalid", "ServiceRequest.note[0].text"),
    ]


def test_malformed_shapes_do_not_crash_the_rules():
    sr = {
        "resourceType": "ServiceRequest",
        "status": 5,
        "intent": [],
        "code": "x",
        "subject": "Patient/1",
        "category": "x",
        "performer": {"identifier": 5},
        "meta": {"profile": "x"},
        "requester": [],
    }
    assert errors(check_service_request(sr))


# --- the message -------------------------------------------------------------------------


def test_bundle_must_be_a_message():
    bundle = message_example()
    bundle["type"] = "collection"
    _message, issues = read_message(bundle)
    assert where(issues) == [("code-invalid", "Bundle.type")]


def test_first_entry_must_be_the_message_header():
    bundle = message_example()
    bundle["entry"].reverse()
    message, issues = read_message(bundle)
    assert message is None
    assert where(issues) == [("invalid", "Bundle.entry[0]")]


@pytest.mark.parametrize("event", ["booking-request", "servicerequest-response"])
def test_other_bars_events_are_not_supported(event):
    bundle = message_example()
    bundle["entry"][0]["resource"]["eventCoding"]["code"] = event
    message, issues = read_message(bundle)
    assert message is None
    assert where(issues) == [("not-supported", "Bundle.entry[0].resource.eventCoding")]
    assert event in issues[0].diagnostics


def test_event_from_another_code_system_is_not_supported():
    bundle = message_example()
    bundle["entry"][0]["resource"]["eventCoding"]["system"] = "https://fhir.nhs.uk/CodeSystem/message-event"
    assert where(read_message(bundle)[1]) == [("not-supported", "Bundle.entry[0].resource.eventCoding")]


def test_no_reason_means_a_new_referral():
    bundle = message_example()
    del bundle["entry"][0]["resource"]["reason"]
    message, issues = read_message(bundle)
    assert issues == [] and message.kind == "new"


@pytest.mark.parametrize(
    ("reason", "status"),
    [("update", "revoked"), ("delete", "entered-in-error"), ("update", "entered-in-error"), ("delete", "revoked")],
)
def test_update_or_delete_with_revoked_or_entered_in_error_is_a_cancellation(reason, status):
    bundle = message_example()
    bundle["entry"][0]["resource"]["reason"]["coding"][0]["code"] = reason
    bundle["entry"][1]["resource"]["status"] = status
    message, issues = read_message(bundle)
    assert issues == []
    assert message.kind == "cancel"


def test_update_of_an_active_referral_is_not_supported():
    bundle = message_example()
    bundle["entry"][0]["resource"]["reason"]["coding"][0]["code"] = "update"
    message, issues = read_message(bundle)
    assert message is None
    assert where(issues) == [("not-supported", "Bundle.entry[0].resource.reason")]


def test_new_referral_that_is_already_revoked_is_refused():
    bundle = message_example()
    bundle["entry"][1]["resource"]["status"] = "revoked"
    _message, issues = read_message(bundle)
    assert where(issues) == [("business-rule", "Bundle.entry[1].resource.status")]


def test_unknown_reason_code_is_named():
    bundle = message_example()
    bundle["entry"][0]["resource"]["reason"]["coding"][0]["code"] = "amend"
    assert where(read_message(bundle)[1]) == [("code-invalid", "Bundle.entry[0].resource.reason")]


def test_focus_must_resolve_to_one_service_request():
    bundle = message_example()
    header = bundle["entry"][0]["resource"]
    header["focus"] = [{"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}]
    assert where(read_message(bundle)[1]) == [("invalid", "Bundle.entry[0].resource.focus[0]")]
    header["focus"] = [{"reference": bundle["entry"][2]["fullUrl"]}]  # the Patient
    assert where(read_message(bundle)[1]) == [("invalid", "Bundle.entry[0].resource.focus")]
    del header["focus"]
    assert where(read_message(bundle)[1]) == [("required", "Bundle.entry[0].resource.focus")]


def test_focus_resolves_relative_references_by_type_and_id():
    bundle = message_example()
    sr = bundle["entry"][1]["resource"]
    bundle["entry"][0]["resource"]["focus"] = [{"reference": f"ServiceRequest/{sr['id']}"}]
    message, issues = read_message(bundle)
    assert issues == [] and message.service_request is sr


def test_relative_references_resolve_against_absolute_full_urls():
    bundle = message_example()
    base = "https://gp.example.nhs.uk/fhir"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        entry["fullUrl"] = f"{base}/{resource['resourceType']}/{resource['id']}"
    sr = bundle["entry"][1]["resource"]
    bundle["entry"][0]["resource"]["focus"] = [{"reference": f"ServiceRequest/{sr['id']}"}]
    sr["subject"] = {"reference": f"{base}/Patient/{bundle['entry'][2]['resource']['id']}"}
    message, issues = read_message(bundle)
    assert issues == []
    assert message.patient is bundle["entry"][2]["resource"]
    assert message.nhs_number == "9912003888"


def test_subject_must_resolve_to_a_patient():
    bundle = message_example()
    sr = bundle["entry"][1]["resource"]
    sr["subject"] = {"reference": bundle["entry"][3]["fullUrl"]}  # the GP Organization
    assert ("invalid", "Bundle.entry[1].resource.subject.reference") in where(read_message(bundle)[1])


def test_patient_in_the_bundle_disagreeing_with_subject_identifier_is_named():
    bundle = message_example()
    bundle["entry"][2]["resource"]["identifier"][0]["value"] = VALID_TEST_NHS
    _message, issues = read_message(bundle)
    assert where(issues) == [("business-rule", "Bundle.entry[1].resource.subject.identifier.value")]


def test_wrong_nhs_number_in_the_message_is_named_once_per_place():
    bundle = message_example()
    bundle["entry"][1]["resource"]["subject"]["identifier"]["value"] = "9912003887"
    bundle["entry"][2]["resource"]["identifier"][0]["value"] = "9912003887"
    consent = bundle["entry"][entry_index(bundle, "Consent")]
    consent["resource"]["patient"]["identifier"]["value"] = "9912003887"
    _message, issues = read_message(bundle)
    assert where(issues) == [
        ("value", "Bundle.entry[1].resource.subject.identifier.value"),
        ("value", f"Bundle.entry[{entry_index(bundle, 'Consent')}].resource.patient.identifier.value"),
    ]


def test_consent_entries_are_checked():
    bundle = message_example()
    at = entry_index(bundle, "Consent")
    bundle["entry"][at]["resource"]["status"] = "banana"
    assert where(read_message(bundle)[1]) == [("code-invalid", f"Bundle.entry[{at}].resource.status")]


def test_empty_values_anywhere_in_the_bundle_are_named_once():
    bundle = message_example()
    bundle["entry"][5]["resource"]["name"][0]["given"] = []
    bundle["entry"][1]["resource"]["note"][0]["text"] = ""
    assert where(read_message(bundle)[1]) == [
        ("invalid", "Bundle.entry[1].resource.note[0].text"),
        ("invalid", "Bundle.entry[5].resource.name[0].given"),
    ]


def test_duplicate_full_urls_are_refused():
    bundle = message_example()
    bundle["entry"][7]["fullUrl"] = bundle["entry"][6]["fullUrl"]
    assert ("invalid", "Bundle.entry[7].fullUrl") in where(read_message(bundle)[1])


def test_sender_ods_falls_back_to_the_source_endpoint():
    bundle = message_example()
    header = bundle["entry"][0]["resource"]
    del header["sender"]
    assert read_message(bundle)[0].sender_ods == "A81001"
    header["source"]["endpoint"] = "https://fhir.nhs.uk/Id/dos-service-id|2222222222"
    assert read_message(bundle)[0].sender_ods is None


def test_unknown_profile_leaves_the_message_valid_with_a_warning():
    bundle = message_example()
    bundle["entry"][1]["resource"]["meta"]["profile"] = ["https://example.org/StructureDefinition/Other"]
    message, issues = read_message(bundle)
    assert issues == []
    assert [(w.severity, w.expression) for w in message.warnings] == [
        ("warning", "Bundle.entry[1].resource.meta.profile[0]")
    ]


def test_refused_cancellation_still_says_which_referral_it_meant():
    message, issues = read_message(load("bars-ig_SERVREQ01_referral-cancel_revoked_bundle.json"))
    assert errors(issues)
    assert message.kind == "cancel"
    assert message.service_request_full_url == "urn:uuid:236bb75d-90ef-461f-b71e-fde7f899802c"


# --- a GP system's message as the contract harness builds it -------------------------------


def test_gp_message_without_consent_or_performer_is_accepted():
    message, issues = read_message(referral_bundle(VALID_TEST_NHS, "A81001"))
    assert issues == []
    assert message.kind == "new"
    assert message.nhs_number == VALID_TEST_NHS
    assert message.sender_ods == "A81001"
    assert message.consents == []
    assert "performer" not in message.service_request
    assert [p["resourceType"] for p in message.practitioners] == ["Practitioner"]


def test_gp_message_with_performer_and_consent_is_accepted():
    message, issues = read_message(
        referral_bundle(VALID_TEST_NHS, "A81001", "VCSE01", "REF-2", consent_to=["VCSE01", "VCSE02"])
    )
    assert issues == []
    assert message.service_request["performer"][0]["identifier"]["value"] == "VCSE01"
    (consent,) = message.consents
    assert [a["reference"]["identifier"]["value"] for a in consent["provision"]["actor"]] == ["VCSE01", "VCSE02"]


def test_gp_message_with_a_bad_nhs_number_names_the_element():
    nhs = VALID_TEST_NHS[:-1] + str((int(VALID_TEST_NHS[-1]) + 1) % 10)
    _message, issues = read_message(referral_bundle(nhs, "A81001"))
    assert where(issues) == [("value", "Bundle.entry[1].resource.subject.identifier.value")]


def test_a_referrer_may_only_cancel_a_stored_referral() -> None:
    from profiles.referral import check_client_update

    stored = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "intent": "plan",
        "note": [{"text": "a"}],
    }
    assert check_client_update(stored, {**stored, "status": "revoked"}) == []
    assert check_client_update(stored, {**stored, "status": "entered-in-error", "meta": {"versionId": "9"}}) == []
    changed = check_client_update(stored, {**stored, "status": "revoked", "intent": "order"})
    assert [i.expression for i in changed] == ["ServiceRequest.intent"]
    still_active = check_client_update(stored, {**stored, "note": [{"text": "b"}]})
    assert sorted(i.expression for i in still_active) == ["ServiceRequest.note", "ServiceRequest.status"]
