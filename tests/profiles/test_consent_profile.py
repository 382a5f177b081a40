"""Consent rules: R4 bindings and invariants (ppc-1..5), opt-in to share with named organisations."""

from __future__ import annotations

import pytest

from profiles.consent_profile import check_consent
from profiles.systems import NHS_NUMBER, ODS_CODE
from tests.profiles.fhir_files import entry_index, load
from tests.profiles.gp_message import consent as harness_consent


def errors(issues):
    return [i for i in issues if i.severity == "error"]


def our_consent():
    bundle = load("sp-referral-message.json")
    return bundle["entry"][entry_index(bundle, "Consent")]["resource"]


@pytest.mark.parametrize(
    "name", ["bars-ig_CONS01_consent_direct-care.json", "ukcore_consent_for-information-access.json"]
)
def test_public_consent_examples_pass_though_they_name_no_recipient(name):
    assert check_consent(load(name)) == []


def test_cons01_patient_given_by_reference_only_is_enough():
    consent = load("bars-ig_CONS01_consent_direct-care.json")
    assert set(consent["patient"]) == {"reference"}
    assert check_consent(consent) == []


def test_opt_in_naming_recipients_passes():
    assert check_consent(our_consent()) == []
    assert check_consent(harness_consent("urn:uuid:p", "9912003888", ["VCSE01", "VCSE02"])) == []


def test_withdrawal_forms_pass():
    inactive = harness_consent("urn:uuid:p", "9912003888", ["VCSE01"], status="inactive")
    deny = harness_consent("urn:uuid:p", "9912003888", ["VCSE01"])
    deny["provision"]["type"] = "deny"
    assert check_consent(inactive) == [] and check_consent(deny) == []


def test_status_outside_the_r4_binding_is_named():
    consent = our_consent()
    consent["status"] = "banana"
    (issue,) = check_consent(consent)
    assert (issue.code, issue.expression) == ("code-invalid", "Consent.status")


def test_missing_policy_and_policy_rule_breaks_ppc_1():
    consent = our_consent()
    del consent["policyRule"]
    (issue,) = check_consent(consent, "Bundle.entry[10].resource")
    assert issue.expression == "Bundle.entry[10].resource.policyRule"
    assert "ppc-1" in issue.diagnostics


def test_privacy_consent_without_patient_breaks_ppc_2():
    consent = our_consent()
    del consent["patient"]
    (issue,) = check_consent(consent)
    assert (issue.code, issue.expression) == ("required", "Consent.patient")


def test_research_consent_without_patient_breaks_ppc_3_and_warns_about_scope():
    consent = our_consent()
    consent["scope"]["coding"][0]["code"] = "research"
    del consent["patient"]
    issues = check_consent(consent)
    assert [(i.severity, i.expression) for i in issues] == [
        ("warning", "Consent.scope"),
        ("error", "Consent.patient"),
    ]


def test_patient_nhs_number_must_pass_modulus_11():
    consent = our_consent()
    consent["patient"]["identifier"]["value"] = "3478526985"
    (issue,) = check_consent(consent)
    assert (issue.code, issue.expression) == ("value", "Consent.patient.identifier.value")


def test_patient_needs_a_reference_or_an_nhs_number():
    consent = our_consent()
    consent["patient"] = {"identifier": {"system": "https://example.org/mrn", "value": "123"}}
    (issue,) = check_consent(consent)
    assert (issue.code, issue.expression) == ("required", "Consent.patient")
    consent["patient"] = {"identifier": {"system": NHS_NUMBER, "value": "9912003888"}}
    assert check_consent(consent) == []


def test_provision_type_and_nested_provisions_are_checked():
    consent = our_consent()
    consent["provision"]["type"] = "maybe"
    consent["provision"]["provision"] = [{"type": "allow"}]
    assert [i.expression for i in check_consent(consent)] == [
        "Consent.provision.type",
        "Consent.provision.provision[0].type",
    ]


def test_actor_needs_role_and_reference():
    consent = our_consent()
    consent["provision"]["actor"] = [
        {"reference": {"identifier": {"system": ODS_CODE, "value": "VCSE01"}}},
        {"role": {"text": "recipient"}, "reference": {"display": "Lincoln Befriending"}},
        {"role": {"text": "recipient"}, "reference": {"identifier": {"system": ODS_CODE, "value": "vcse01"}}},
    ]
    issues = check_consent(consent)
    assert [(i.code, i.expression) for i in issues] == [
        ("required", "Consent.provision.actor[0].role"),
        ("required", "Consent.provision.actor[1].reference"),
        ("value", "Consent.provision.actor[2].reference.identifier.value"),
    ]
    assert "upper case" in issues[2].diagnostics


def test_every_fault_is_reported_together():
    consent = our_consent()
    consent["status"] = "yes"
    del consent["scope"]
    consent["category"] = []
    del consent["policyRule"]
    consent["provision"]["type"] = "allow"
    expressions = [i.expression for i in errors(check_consent(consent))]
    assert expressions == [
        "Consent.status",
        "Consent.scope",
        "Consent.category",
        "Consent.policyRule",
        "Consent.provision.type",
        "Consent.category",  # also an empty array, which FHIR JSON forbids
    ]
