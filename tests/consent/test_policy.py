"""The disclosure decision over a patient's R4 Consents (consent/policy.py, docs/consent.md)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consent.categories import ALL_CATEGORIES, SOCIAL_PRESCRIBING_PURPOSE, DataCategory
from consent.policy import Decision, decide, named_recipients, withdrawn_recipients
from profiles.systems import (
    CONSENT_ACTION,
    CONSENT_SCOPE,
    LOCAL_DATA_CATEGORY,
    LOINC,
    ODS_CODE,
    SNOMED,
    V3_ACT_CODE,
    V3_ACT_REASON,
    V3_PARTICIPATION_TYPE,
    VCSE_ORG_ID,
)

NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
HOST_A, HOST_B = "8VC01", "8VC02"
NHS = "9999999468"

# BaRS implementation guide example CONS01 (NHSDigital/NHSDigital-FHIR-BookingAndReferrals), a consent
# for direct care, copied here so the test needs no other file. Valid, and it names no recipient.
BARS_CONS01: dict[str, Any] = {
    "resourceType": "Consent",
    "id": "8fc39b95-89a6-45fb-914f-1458a10e9e14",
    "meta": {
        "lastUpdated": "2021-11-26T15:00:00+00:00",
        "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Consent"],
    },
    "status": "active",
    "scope": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                "code": "patient-privacy",
                "display": "Privacy Consent",
            }
        ]
    },
    "category": [
        {
            "coding": [
                {
                    "system": "https://fhir.nhs.uk/CodeSystem/consent-categories-bars",
                    "code": "DRC",
                    "display": "Direct Care",
                }
            ]
        }
    ],
    "patient": {"reference": "urn:uuid:9589fb37-87a2-48d8-968f-b371429208a8"},
    "dateTime": "2021-11-26",
    "policyRule": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "IMPLIED",
                "display": "implied consent",
            }
        ]
    },
}

# UK Core example UKCore-Consent-ForInformationAccess-Example (HL7 UK, Apache-2.0), copied here
# (narrative left out).
UKCORE_INFORMATION_ACCESS: dict[str, Any] = {
    "resourceType": "Consent",
    "id": "UKCore-Consent-ForInformationAccess-Example",
    "status": "active",
    "scope": {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                "code": "patient-privacy",
                "display": "Privacy Consent",
            }
        ]
    },
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "INFA",
                    "display": "information access",
                }
            ]
        }
    ],
    "patient": {"reference": "Patient/UKCore-Patient-RichardSmith-Example"},
    "dateTime": "2019-12-10T11:15:00+00:00",
    "performer": [{"reference": "Practitioner/UKCore-Practitioner-DoctorPaulRastall-Example"}],
    "organization": [{"reference": "Organization/UKCore-Organization-WhiteRoseMedicalCentre-Example"}],
    "policy": [
        {
            "authority": "https://www.exampleauthority.nhs.uk",
            "uri": "https://www.exampleauthority.nhs.uk/policies/ukcore-policy-example-v1.0",
        }
    ],
    "provision": {
        "purpose": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "GOV", "display": "government"}
        ]
    },
}


def harness_consent(patient_ref: str, nhs: str, orgs: list[str], status: str = "active") -> dict[str, Any]:
    """The Consent an outside GP system sends, as an outside integrator's checks write it."""
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {
            "reference": patient_ref,
            "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": nhs},
        },
        "dateTime": "2026-11-20T10:00:00+00:00",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {"start": "2026-11-20"},
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
            "action": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "disclose"}]}
            ],
            "actor": [
                {
                    "role": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}
                        ]
                    },
                    "reference": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": o}},
                }
                for o in orgs
            ],
        },
    }


def ircp(value: str, system: str = ODS_CODE) -> dict[str, Any]:
    return {
        "role": {"coding": [{"system": V3_PARTICIPATION_TYPE, "code": "IRCP"}]},
        "reference": {"identifier": {"system": system, "value": value}},
    }


def codes(*categories: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": LOCAL_DATA_CATEGORY, "code": c}]} for c in categories]


def consent(
    *actors: dict[str, Any],
    cid: str = "c1",
    kind: str | None = "permit",
    status: str = "active",
    recorded: str | None = "2026-11-20T10:00:00+00:00",
    period: dict[str, str] | None = None,
    **provision: Any,
) -> dict[str, Any]:
    """An opt-in Consent shaped as docs/design.md describes; keyword arguments replace provision elements."""
    body: dict[str, Any] = {
        "period": {"start": "2026-11-20"} if period is None else period,
        "purpose": [{"system": V3_ACT_REASON, "code": "TREAT"}],
        "action": [{"coding": [{"system": CONSENT_ACTION, "code": "disclose"}]}],
        "actor": list(actors),
    }
    if kind is not None:
        body["type"] = kind
    body.update(provision)
    out: dict[str, Any] = {
        "resourceType": "Consent",
        "id": cid,
        "status": status,
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "policyRule": {"coding": [{"system": V3_ACT_CODE, "code": "OPTOUT" if kind == "deny" else "OPTIN"}]},
        "provision": body,
    }
    if recorded is not None:
        out["dateTime"] = recorded
    return out


def ask(
    consents: list[dict[str, Any]], recipient: str = HOST_A, *, categories: Any = ALL_CATEGORIES, now: datetime = NOW
) -> Decision:
    return decide(consents, recipient=recipient, purpose=SOCIAL_PRESCRIBING_PURPOSE, categories=categories, now=now)


def test_no_consent_on_record_denies_with_a_plain_reason() -> None:
    decision = ask([])
    assert decision == Decision(False, frozenset(), None, "no consent on record for this patient")


def test_harness_style_consent_permits_its_named_ods_org_for_every_category() -> None:
    given = harness_consent("urn:uuid:p1", NHS, [HOST_A])
    decision = ask([given])
    assert decision.permit
    assert decision.categories == ALL_CATEGORIES
    assert decision.consent_id is None  # the harness sends it without an id
    assert HOST_A in decision.reason


def test_consent_for_host_a_does_not_permit_host_b() -> None:
    decision = ask([harness_consent("urn:uuid:p1", NHS, [HOST_A])], HOST_B)
    assert not decision.permit
    assert decision.categories == frozenset()
    assert decision.reason == f"no active consent names {HOST_B} as a recipient"


@pytest.mark.parametrize("fixture", [BARS_CONS01, UKCORE_INFORMATION_ACCESS], ids=["bars-cons01", "ukcore"])
@pytest.mark.parametrize("host", [HOST_A, "VCSE-0001"])
def test_public_consent_examples_name_no_recipient_so_no_vcse_host_may_receive(
    fixture: dict[str, Any], host: str
) -> None:
    decision = ask([copy.deepcopy(fixture)], host)
    assert not decision.permit
    assert decision.consent_id is None
    assert decision.reason == f"no active consent names {host} as a recipient"


def test_period_end_is_exclusive_so_an_expired_consent_denies() -> None:
    ends = consent(ircp(HOST_A), period={"start": "2026-01-01", "end": "2026-11-21T09:30:00+00:00"})
    assert ask([ends], now=NOW - timedelta(seconds=1)).permit
    expired = ask([ends], now=NOW)
    assert not expired.permit
    assert "Consent/c1 is not in force now" in expired.reason
    assert expired.lapsed  # ended by its period, not withdrawn: the host is told "consent-expired"


def test_a_withdrawn_consent_is_not_a_lapsed_one() -> None:
    withdrawn = consent(ircp(HOST_A), status="inactive")
    decision = ask([withdrawn])
    assert not decision.permit and not decision.lapsed


def test_period_start_is_inclusive_so_a_future_consent_denies_until_then() -> None:
    starts = consent(ircp(HOST_A), period={"start": "2026-11-21T09:30:00+00:00"})
    assert not ask([starts], now=NOW - timedelta(microseconds=1)).permit
    assert ask([starts], now=NOW).permit


def test_date_only_end_covers_the_whole_day_in_utc() -> None:
    until = consent(ircp(HOST_A), period={"start": "2026-11-01", "end": "2026-11-21"})
    assert ask([until], now=datetime(2026, 11, 21, 23, 59, 59, tzinfo=UTC)).permit
    assert not ask([until], now=datetime(2026, 11, 22, 0, 0, tzinfo=UTC)).permit


def test_unreadable_period_start_never_permits() -> None:
    assert not ask([consent(ircp(HOST_A), period={"start": "21/11/2026"})]).permit


@pytest.mark.parametrize("status", ["inactive", "draft", "proposed", "rejected", "entered-in-error"])
def test_only_an_active_consent_counts(status: str) -> None:
    decision = ask([consent(ircp(HOST_A), status=status)])
    assert not decision.permit
    assert f"Consent/c1 is {status}" in decision.reason


def test_later_deny_withdraws_an_earlier_permit() -> None:
    permit = consent(ircp(HOST_A), cid="yes")
    deny = consent(ircp(HOST_A), cid="no", kind="deny", recorded="2026-11-21T08:00:00+00:00")
    decision = ask([deny, permit])  # stored order does not matter; Consent.dateTime does
    assert not decision.permit
    assert decision.consent_id == "no"
    assert "Consent/no refuses disclosure to 8VC01" in decision.reason


def test_earlier_deny_is_superseded_by_a_later_permit() -> None:
    deny = consent(ircp(HOST_A), cid="no", kind="deny", recorded="2026-11-19T08:00:00+00:00")
    permit = consent(ircp(HOST_A), cid="yes")
    decision = ask([permit, deny])
    assert decision.permit
    assert decision.consent_id == "yes"


def test_meta_last_updated_orders_consents_recorded_on_the_same_date() -> None:
    permit = consent(ircp(HOST_A), cid="yes", recorded="2026-11-20")
    permit["meta"] = {"lastUpdated": "2026-11-20T08:00:00+00:00"}
    deny = consent(ircp(HOST_A), cid="no", kind="deny", recorded="2026-11-20")
    deny["meta"] = {"lastUpdated": "2026-11-20T09:00:00+00:00"}
    assert ask([deny, permit]).consent_id == "no"
    deny["meta"]["lastUpdated"] = "2026-11-20T07:00:00+00:00"
    assert ask([deny, permit]).consent_id == "yes"


def test_a_deny_recorded_at_the_same_instant_as_a_permit_wins() -> None:
    permit = consent(ircp(HOST_A), cid="yes")
    deny = consent(ircp(HOST_A), cid="no", kind="deny")
    assert not ask([deny, permit]).permit
    assert not ask([permit, deny]).permit


def test_a_deny_that_cannot_be_placed_in_time_counts_as_the_latest() -> None:
    permit = consent(ircp(HOST_A), cid="yes", recorded="2026-11-21T09:00:00+00:00")
    undated = consent(ircp(HOST_A), cid="no", kind="deny", recorded=None)
    assert ask([permit, undated]).consent_id == "no"


def test_a_deny_naming_no_recipient_refuses_every_host() -> None:
    permit = consent(ircp(HOST_A), ircp(HOST_B), cid="yes")
    blanket = consent(cid="no", kind="deny", recorded="2026-11-21T08:00:00+00:00")
    assert not ask([permit, blanket], HOST_A).permit
    assert not ask([permit, blanket], HOST_B).permit


def test_a_deny_naming_another_host_leaves_this_host_permitted() -> None:
    permit = consent(ircp(HOST_A), ircp(HOST_B), cid="yes")
    deny_b = consent(ircp(HOST_B), cid="no", kind="deny", recorded="2026-11-21T08:00:00+00:00")
    assert ask([permit, deny_b], HOST_A).permit
    assert not ask([permit, deny_b], HOST_B).permit


def test_category_codes_limit_the_permit_to_those_categories() -> None:
    limited = consent(ircp(HOST_A), code=codes("contact-details", "needs-and-concerns"))
    decision = ask([limited], categories={"contact-details", "what-matters-to-me"})
    assert decision.permit
    assert decision.categories == {"contact-details"}
    assert "not of what-matters-to-me" in decision.reason


def test_a_permit_covering_none_of_the_requested_categories_denies_and_cites_it() -> None:
    limited = consent(ircp(HOST_A), code=codes("contact-details"))
    decision = ask([limited], categories={"identifiers"})
    assert not decision.permit
    assert decision.consent_id == "c1"
    assert "only contact-details" in decision.reason


def test_nested_permit_codes_limit_the_permit() -> None:
    nested = consent(ircp(HOST_A), provision=[{"type": "permit", "code": codes("safeguarding")}])
    assert ask([nested]).categories == {"safeguarding"}


def test_nested_deny_removes_its_categories() -> None:
    nested = consent(ircp(HOST_A), provision=[{"type": "deny", "code": codes("what-matters-to-me")}])
    decision = ask([nested])
    assert decision.categories == ALL_CATEGORIES - {"what-matters-to-me"}


def test_nested_deny_without_category_removes_everything_for_its_actor_only() -> None:
    nested = consent(ircp(HOST_A), ircp(HOST_B), provision=[{"type": "deny", "actor": [ircp(HOST_B)]}])
    assert ask([nested], HOST_A).categories == ALL_CATEGORIES
    refused = ask([nested], HOST_B)
    assert not refused.permit
    assert refused.consent_id == "c1"


def test_nested_deny_outside_its_own_period_does_not_apply() -> None:
    later = {"type": "deny", "code": codes("safeguarding"), "period": {"start": "2027-01-01"}}
    assert ask([consent(ircp(HOST_A), provision=[later])]).categories == ALL_CATEGORIES


def test_a_category_code_we_cannot_read_grants_nothing_in_a_permit() -> None:
    foreign = [{"coding": [{"system": SNOMED, "code": "871731000000106"}]}]
    decision = ask([consent(ircp(HOST_A), code=foreign)])
    assert not decision.permit


def test_a_category_code_we_cannot_read_withholds_everything_in_a_nested_deny() -> None:
    foreign = [{"coding": [{"system": SNOMED, "code": "871731000000106"}]}]
    assert not ask([consent(ircp(HOST_A), provision=[{"type": "deny", "code": foreign}])]).permit


def test_action_present_without_disclose_does_not_permit() -> None:
    access_only = consent(ircp(HOST_A), action=[{"coding": [{"system": CONSENT_ACTION, "code": "access"}]}])
    decision = ask([access_only])
    assert not decision.permit
    assert "does not cover disclosure" in decision.reason


def test_purpose_present_without_treat_does_not_permit() -> None:
    research = consent(ircp(HOST_A), purpose=[{"system": V3_ACT_REASON, "code": "HRESCH"}])
    decision = ask([research])
    assert not decision.permit
    assert "does not cover purpose TREAT" in decision.reason


def test_absent_action_and_purpose_do_not_restrict() -> None:
    bare = consent(ircp(HOST_A))
    del bare["provision"]["action"], bare["provision"]["purpose"]
    assert ask([bare]).permit


def test_a_root_provision_without_type_does_not_permit() -> None:
    untyped = consent(ircp(HOST_A), kind=None)
    decision = ask([untyped])
    assert not decision.permit
    assert "has no provision.type permit" in decision.reason


def test_recipient_may_be_named_by_our_vcse_organisation_id() -> None:
    assert ask([consent(ircp("VCSE-0001", VCSE_ORG_ID))], "VCSE-0001").permit


def test_an_identifier_in_another_system_does_not_name_the_recipient() -> None:
    assert not ask([consent(ircp(HOST_A, "https://example.org/ids"))]).permit


@pytest.mark.parametrize("reference", ["Organization/8VC01", "https://gw.example/fhir/Organization/8VC01"])
def test_recipient_may_be_named_by_an_organization_reference_with_its_id(reference: str) -> None:
    actor = {"role": ircp(HOST_A)["role"], "reference": {"reference": reference}}
    assert ask([consent(actor)]).permit


@pytest.mark.parametrize(
    "reference", ["urn:uuid:5f0e6a4c-0000-4000-8000-000000000001", "Organization/8VC011", "Practitioner/8VC01"]
)
def test_a_reference_that_does_not_end_in_the_organisation_id_names_nobody(reference: str) -> None:
    actor = {"role": ircp(HOST_A)["role"], "reference": {"reference": reference}}
    assert not ask([consent(actor)]).permit


def test_an_actor_with_a_role_other_than_ircp_is_not_a_recipient() -> None:
    performer = ircp(HOST_A)
    performer["role"]["coding"][0]["code"] = "PRF"
    assert not ask([consent(performer)]).permit


def test_reasons_carry_no_patient_identifier() -> None:
    given = harness_consent("urn:uuid:p1", NHS, [HOST_A])
    for decision in (ask([given]), ask([given], HOST_B), ask([{**given, "status": "inactive"}])):
        assert NHS not in decision.reason


def test_named_recipients_reads_the_ircp_actors_of_the_root_provision() -> None:
    given = harness_consent("urn:uuid:p1", NHS, [HOST_A, HOST_B])
    assert named_recipients(given) == {HOST_A, HOST_B}
    assert named_recipients(BARS_CONS01) == set()
    assert named_recipients(UKCORE_INFORMATION_ACCESS) == set()


def test_withdrawn_recipients_are_those_that_lose_every_category() -> None:
    before = [consent(ircp(HOST_A), ircp(HOST_B), cid="yes")]
    withdraw_a = consent(ircp(HOST_A), cid="no-a", kind="deny", recorded="2026-11-21T08:00:00+00:00")
    narrow_b = consent(
        ircp(HOST_B),
        cid="narrow-b",
        kind="deny",
        recorded="2026-11-21T08:00:00+00:00",
        code=codes(DataCategory.SAFEGUARDING.value),
    )
    after = [*before, withdraw_a, narrow_b]
    assert withdrawn_recipients(before, after, now=NOW) == {HOST_A}


def test_making_the_consent_inactive_withdraws_every_named_recipient() -> None:
    before = [harness_consent("urn:uuid:p1", NHS, [HOST_A, HOST_B])]
    after = [harness_consent("urn:uuid:p1", NHS, [HOST_A, HOST_B], status="inactive")]
    assert withdrawn_recipients(before, after, now=NOW) == {HOST_A, HOST_B}
    assert withdrawn_recipients(before, before, now=NOW) == set()


def test_now_must_carry_a_time_zone() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ask([], now=datetime(2026, 11, 21, 9, 30))


def test_an_unknown_category_request_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="diagnosis"):
        ask([], categories={"diagnosis"})
