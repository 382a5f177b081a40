"""The minimal referral packet and the recall / cease notices (mappings/packet.py, docs/packet.md)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from consent.categories import ALL_CATEGORIES, SOCIAL_PRESCRIBING_PURPOSE
from consent.policy import Decision, decide
from mappings.packet import (
    ALL_FIELDS,
    DEFAULT_ALLOWED_FIELDS,
    FIELD_CATEGORY,
    FLAG_CATEGORY,
    SCHEMA_FILE,
    DisclosureNotPermitted,
    Packet,
    build_packet,
    notice_packet,
)
from profiles.systems import CONSENT_ACTION, LOCAL_DATA_CATEGORY, ODS_CODE, V3_ACT_REASON
from profiles.systems import V3_PARTICIPATION_TYPE as PARTICIPATION

CREATED = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
HOST = "8VC01"
NHS = "9999999468"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
ENVELOPE = {"schema", "kind", "packet_id", "referral_id", "created_at", "recipient", "referrer"}


# --- a small validator for the JSON Schema keywords our schema uses (jsonschema is not installed) ---

SUPPORTED_KEYWORDS = {
    "$schema", "$id", "title", "description", "$defs", "$ref", "oneOf", "type", "const", "enum",
    "properties", "required", "additionalProperties", "items", "minItems", "minLength", "minProperties",
    "pattern", "format",
}
_TYPES: dict[str, type | tuple[type, ...]] = {"object": dict, "array": list, "string": str, "boolean": bool}


def schema_errors(value: Any, schema: dict[str, Any] = SCHEMA, at: str = "$") -> list[str]:
    """Returns where value breaks the schema (draft 2020-12 subset listed in SUPPORTED_KEYWORDS)."""
    errors: list[str] = []
    if "$ref" in schema:
        errors += schema_errors(value, SCHEMA["$defs"][schema["$ref"].removeprefix("#/$defs/")], at)
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not schema_errors(value, s, at)]
        if len(matching) != 1:
            errors.append(f"{at}: matches {len(matching)} of oneOf")
    if "type" in schema and not isinstance(value, _TYPES[schema["type"]]):
        return [*errors, f"{at}: not {schema['type']}"]
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        errors.append(f"{at}: not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} not in enum")
    if isinstance(value, dict):
        errors += _object_errors(value, schema, at)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{at}: fewer than {schema['minItems']} items")
        for i, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{at}[{i}]")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{at}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{at}: does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and not _is_date_time(value):
            errors.append(f"{at}: not an RFC 3339 date-time")
    return errors


def _object_errors(value: dict[str, Any], schema: dict[str, Any], at: str) -> list[str]:
    errors = [f"{at}: missing {k}" for k in schema.get("required", []) if k not in value]
    if len(value) < schema.get("minProperties", 0):
        errors.append(f"{at}: fewer than {schema['minProperties']} properties")
    properties = schema.get("properties", {})
    for key, item in value.items():
        if key in properties:
            errors += schema_errors(item, properties[key], f"{at}.{key}")
        elif schema.get("additionalProperties") is False:
            errors.append(f"{at}: unexpected {key}")
    return errors


def _is_date_time(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is not None and "T" in value
    except ValueError:
        return False


def _keywords(schema: dict[str, Any]) -> set[str]:
    found = set(schema)
    subs = [*schema.get("properties", {}).values(), *schema.get("$defs", {}).values()]
    subs += schema.get("oneOf", [])
    for sub in [*subs, schema["items"]] if "items" in schema else subs:
        found |= _keywords(sub)
    return found


# --- inputs ---


def harness_referral() -> tuple[dict[str, Any], dict[str, Any]]:
    """ServiceRequest and Patient as ../shared/contract/harness.py `referral_bundle()` writes them."""
    referral = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "https://gp.example.nhs.uk/referrals", "value": "REF-1"}],
        "status": "active", "intent": "plan",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "871731000000106",
                             "display": "Referral to social prescribing service"}]},
        "subject": {"reference": "urn:uuid:p", "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                              "value": NHS}},
        "authoredOn": "2026-11-20T10:00:00+00:00",
        "performer": [{"identifier": {"system": ODS_CODE, "value": HOST}}],
        "note": [{"text": "Lives alone; would like to meet people"}],
    }
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS}],
        "name": [{"family": "Example", "given": ["Alex"]}], "gender": "unknown", "birthDate": "1950-02-03",
        "telecom": [{"system": "phone", "value": "07700900123", "use": "mobile"}],
        "address": [{"line": ["1 Test Street"], "city": "Lincoln", "postalCode": "LN1 1AA"}],
    }
    return referral, patient


def rich_patient() -> dict[str, Any]:
    """A UK Core Patient with communication and contact-preference extensions (UK Core / PDS style)."""
    return {
        "resourceType": "Patient",
        "extension": [
            {"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ContactPreference",
             "extension": [
                 {"url": "PreferredContactTimes",
                  "valueTiming": {"repeat": {"dayOfWeek": ["mon", "wed", "fri"], "when": ["MORN"]}}},
                 {"url": "PreferredWrittenCommunicationFormat",
                  "valueCodeableConcept": {"coding": [{"code": "11", "display": "Large print"}]}},
             ]},
            {"url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSCommunication",
             "extension": [{"url": "language", "valueCodeableConcept": {"coding": [{"code": "fr",
                                                                                    "display": "French"}]}},
                           {"url": "interpreterRequired", "valueBoolean": True}]},
        ],
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": NHS}],
        "name": [{"use": "old", "given": ["Roberta"]}, {"use": "nickname", "given": ["Bobbie"]},
                 {"use": "official", "family": "Smith", "given": ["Robin", "Jane"]}],
        "telecom": [{"system": "email", "value": "robin@example.org", "rank": 2},
                    {"system": "fax", "value": "01131231235"},
                    {"system": "phone", "value": "01131231234", "use": "home", "rank": 1},
                    {"system": "phone", "value": "07000000000", "use": "old"}],
        "gender": "female", "birthDate": "1948-03-11",
        "address": [{"use": "work", "line": ["Office"], "postalCode": "LS1 1AA"},
                    {"use": "home", "line": ["2 Mill Lane"], "city": "Lincoln", "postalCode": "LN1 2AB"}],
    }


def rich_referral() -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest", "status": "active", "intent": "plan", "priority": "routine",
        "subject": {"reference": "Patient/p"},
        "reasonCode": [{"text": "Loneliness"}, {"coding": [{"display": "Housing"}]}, {"text": "Loneliness"}],
        "note": [{"text": "Recently bereaved"}, {"text": "  "}],
    }


def what_matters(text: str, status: str = "completed") -> dict[str, Any]:
    """A QuestionnaireResponse whose nested item `what-matters-to-me` carries the patient's words."""
    return {"resourceType": "QuestionnaireResponse", "status": status, "item": [
        {"linkId": "about-me", "item": [{"linkId": "what-matters-to-me", "answer": [{"valueString": text}]}]},
        {"linkId": "accessibility-needs", "answer": [{"valueString": "Step-free access"}]},
    ]}


def flag(status: str = "active", *, category: str | None = "safety", text: str = "Lone worker risk",
         end: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Flag", "status": status, "code": {"text": text},
                           "subject": {"reference": "Patient/p"}}
    if category:
        out["category"] = [{"coding": [{"system": FLAG_CATEGORY, "code": category}]}]
    if end:
        out["period"] = {"start": "2026-01-01", "end": end}
    return out


def permit(*categories: str) -> Decision:
    granted = frozenset(categories or ALL_CATEGORIES)
    return Decision(True, granted, "c1", "test decision")


def build(
    referral: dict[str, Any] | None = None,
    patient: dict[str, Any] | None = None,
    *,
    extras: dict[str, Any] | None = None,
    decision: Decision | None = None,
    allowed: Any = DEFAULT_ALLOWED_FIELDS,
) -> Packet:
    return build_packet(
        referral=referral if referral is not None else rich_referral(),
        patient=patient,
        extras=extras or {},
        decision=decision or permit(),
        allowed_fields=allowed,
        referral_id="SPR-7Q2K9",
        packet_id="pkt-0001",
        recipient=HOST,
        referrer={"organisation": "A81001", "name": None},
        created_at=CREATED,
    )


def content_paths(body: dict[str, Any]) -> set[str]:
    return {f"{group}.{name}" for group in ("person", "referral") for name in body.get(group, {})}


# --- tests ---


def test_default_packet_leaves_out_nhs_number_date_of_birth_street_address_and_gp_note() -> None:
    referral, patient = harness_referral()
    packet = build(referral, patient)
    text = json.dumps(packet.body)
    for leak in (NHS, "1950-02-03", "1 Test Street", "LN1 1AA", "Lives alone"):
        assert leak not in text
    assert packet.body["person"] == {
        "first_name": "Alex",
        "contact_routes": [{"type": "phone", "value": "07700900123", "use": "mobile"}],
    }
    assert packet.fields == ["person.first_name", "person.contact_routes"]


def test_default_allow_list_is_designs_default_packet() -> None:
    assert {"person.nhs_number", "person.date_of_birth", "person.address", "person.gender",
            "referral.reason_text"}.isdisjoint(DEFAULT_ALLOWED_FIELDS)
    assert {"person.first_name", "person.contact_routes", "person.preferred_contact_time", "person.language",
            "person.interpreter_required", "person.accessibility_needs", "referral.need_categories",
            "referral.what_matters_to_me", "referral.safeguarding_concern"} <= DEFAULT_ALLOWED_FIELDS


def test_every_field_belongs_to_one_known_category_and_every_category_has_a_field() -> None:
    assert set(FIELD_CATEGORY) == set(ALL_FIELDS)
    assert set(FIELD_CATEGORY.values()) == ALL_CATEGORIES


def test_harness_consent_and_packet_end_to_end_from_the_policy_decision() -> None:
    referral, patient = harness_referral()
    consent = {"resourceType": "Consent", "status": "active", "dateTime": "2026-11-20T10:00:00+00:00",
               "provision": {"type": "permit", "period": {"start": "2026-11-20"},
                             "purpose": [{"system": V3_ACT_REASON, "code": "TREAT"}],
                             "action": [{"coding": [{"system": CONSENT_ACTION, "code": "disclose"}]}],
                             "actor": [{"role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
                                        "reference": {"identifier": {"system": ODS_CODE, "value": HOST}}}]}}
    decision = decide([consent], recipient=HOST, purpose=SOCIAL_PRESCRIBING_PURPOSE,
                      categories=ALL_CATEGORIES, now=CREATED)
    packet = build(referral, patient, decision=decision)
    assert packet.body["referral_id"] == "SPR-7Q2K9"
    assert packet.body["person"]["first_name"] == "Alex"
    assert schema_errors(packet.body) == []


def test_a_category_withdrawn_from_consent_is_absent_even_when_allowed_and_present() -> None:
    nested_deny = {"type": "deny", "code": [{"coding": [{"system": LOCAL_DATA_CATEGORY,
                                                         "code": "what-matters-to-me"}]}]}
    consent = {"resourceType": "Consent", "id": "c9", "status": "active", "dateTime": "2026-11-20",
               "provision": {"type": "permit", "provision": [nested_deny],
                             "actor": [{"role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
                                        "reference": {"identifier": {"system": ODS_CODE, "value": HOST}}}]}}
    decision = decide([consent], recipient=HOST, purpose=SOCIAL_PRESCRIBING_PURPOSE,
                      categories=ALL_CATEGORIES, now=CREATED)
    extras = {"questionnaire_responses": [what_matters("Getting out of the house")]}
    packet = build(patient=rich_patient(), extras=extras, decision=decision)
    assert "referral.what_matters_to_me" not in packet.fields
    assert "Getting out of the house" not in json.dumps(packet.body)
    with_it = build(patient=rich_patient(), extras=extras)
    assert with_it.body["referral"]["what_matters_to_me"] == "Getting out of the house"


def test_every_field_from_rich_sources_when_agreement_and_consent_allow_all() -> None:
    extras = {"questionnaire_responses": [what_matters("Walking with others")], "flags": [flag()]}
    packet = build(patient=rich_patient(), extras=extras, allowed=ALL_FIELDS)
    assert packet.body["person"] == {
        "first_name": "Robin",
        "preferred_name": "Bobbie",
        "contact_routes": [{"type": "phone", "value": "01131231234", "use": "home"},
                           {"type": "email", "value": "robin@example.org"}],
        "preferred_contact_time": "Monday, Wednesday, Friday; morning",
        "language": "French",
        "interpreter_required": True,
        "accessibility_needs": ["Large print", "Step-free access"],
        "nhs_number": NHS,
        "date_of_birth": "1948-03-11",
        "address": {"lines": ["2 Mill Lane"], "city": "Lincoln", "postcode": "LN1 2AB"},
        "gender": "female",
    }
    assert packet.body["referral"] == {
        "need_categories": ["Loneliness", "Housing"],
        "reason_text": "Recently bereaved",
        "priority": "routine",
        "what_matters_to_me": "Walking with others",
        "safeguarding_concern": True,
    }
    assert packet.fields == list(ALL_FIELDS)
    assert schema_errors(packet.body) == []


def test_envelope_is_always_present_and_content_is_absent_not_empty() -> None:
    empty_patient = {"resourceType": "Patient", "name": [{"given": ["  "]}],
                     "telecom": [{"system": "url", "value": "x"}]}
    blank_answer = {"resourceType": "QuestionnaireResponse", "status": "completed",
                    "item": [{"linkId": "what-matters-to-me", "answer": [{"valueString": " "}]}]}
    referral = {"resourceType": "ServiceRequest", "note": [{"text": ""}], "reasonCode": []}
    extras = {"questionnaire_responses": [blank_answer], "flags": []}
    packet = build(referral, empty_patient, extras=extras, allowed=ALL_FIELDS)
    assert set(packet.body) == ENVELOPE
    assert packet.fields == []
    assert packet.body["referrer"] == {"organisation": "A81001"}  # no name: absent, not null
    assert packet.body["schema"] == {"url": "/vcse/v1/schema/referral-packet", "version": "1.0"}
    assert packet.body["created_at"] == "2026-11-21T09:30:00+00:00"
    assert schema_errors(packet.body) == []


def test_fields_outside_the_agreement_are_absent_even_when_consented() -> None:
    packet = build(patient=rich_patient(), allowed={"person.first_name"})
    assert packet.fields == ["person.first_name"]
    assert set(packet.body) == ENVELOPE | {"person"}


def test_preferred_contact_time_uses_timing_text_when_the_gp_wrote_one() -> None:
    patient = rich_patient()
    timing = patient["extension"][0]["extension"][0]["valueTiming"]
    timing["code"] = {"text": "Weekday afternoons after 2pm"}
    assert build(patient=patient).body["person"]["preferred_contact_time"] == "Weekday afternoons after 2pm"


def test_language_prefers_patient_communication_marked_preferred() -> None:
    patient = rich_patient()
    patient["communication"] = [{"language": {"coding": [{"code": "en", "display": "English"}]}},
                                {"language": {"text": "Polish"}, "preferred": True}]
    assert build(patient=patient).body["person"]["language"] == "Polish"


@pytest.mark.parametrize(("flags", "expected"), [
    ([flag()], True),
    ([flag(category=None, text="Safeguarding concern - adult")], True),
    ([flag(status="inactive")], None),
    ([flag(end="2026-11-20")], None),
    ([flag(end="2026-11-21")], True),
    ([flag(category="clinical", text="Allergy")], None),
    # BaRS scene-safety flag: its own category system, and "The Scene is safe" is no concern
    ([{"resourceType": "Flag", "status": "active",
       "category": [{"coding": [{"system": "https://fhir.nhs.uk/CodeSystem/flag-categories-bars",
                                 "code": "SS"}]}],
       "code": {"coding": [{"code": "S", "display": "The Scene is safe"}]}}], None),
    ([], None),
])
def test_safeguarding_is_a_flag_only_and_never_its_detail(
    flags: list[dict[str, Any]], expected: bool | None
) -> None:
    packet = build(extras={"flags": flags})
    assert packet.body.get("referral", {}).get("safeguarding_concern") is expected
    assert "Lone worker" not in json.dumps(packet.body)
    assert "Safeguarding concern - adult" not in json.dumps(packet.body)


def test_what_matters_to_me_is_read_only_from_finished_questionnaire_responses() -> None:
    extras = {"questionnaire_responses": [what_matters("Draft words", status="in-progress"),
                                          what_matters("My garden", status="amended")]}
    assert build(extras=extras).body["referral"]["what_matters_to_me"] == "My garden"


def test_building_for_a_deny_decision_is_refused() -> None:
    with pytest.raises(DisclosureNotPermitted, match="no consent on record"):
        build(decision=Decision(False, frozenset(), None, "no consent on record for this patient"))


def test_a_misspelt_agreement_field_is_refused() -> None:
    with pytest.raises(ValueError, match=r"person\.nhs_no"):
        build(allowed={"person.first_name", "person.nhs_no"})


def test_created_at_must_carry_a_time_zone() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_packet(referral={}, patient=None, extras={}, decision=permit(), allowed_fields=(),
                     referral_id="r", packet_id="p", recipient=HOST, referrer={"organisation": "A81001"},
                     created_at=datetime(2026, 11, 21))


@pytest.mark.parametrize(("kind", "reason"), [("recall", "revoked"), ("recall", "entered-in-error"),
                                              ("cease", "consent-withdrawn"), ("cease", "consent-expired")])
def test_notices_carry_the_referral_id_and_a_coded_reason_only(kind: Any, reason: str) -> None:
    notice = notice_packet(kind, referral_id="SPR-7Q2K9", packet_id="pkt-0002", recipient=HOST,
                           reason=reason, created_at=CREATED)
    assert set(notice) == {"schema", "kind", "packet_id", "referral_id", "created_at", "recipient",
                           "reason", "reason_text"}
    assert (notice["kind"], notice["reason"], notice["referral_id"]) == (kind, reason, "SPR-7Q2K9")
    assert schema_errors(notice) == []


@pytest.mark.parametrize(("kind", "reason"), [("recall", "consent-withdrawn"), ("cease", "revoked"),
                                              ("cease", "Mrs Smith asked us to stop"), ("erase", "revoked")])
def test_notices_refuse_free_text_or_mismatched_reasons(kind: Any, reason: str) -> None:
    with pytest.raises(ValueError):
        notice_packet(kind, referral_id="r", packet_id="p", recipient=HOST, reason=reason, created_at=CREATED)


def test_schema_lists_exactly_the_builders_content_fields() -> None:
    defs = SCHEMA["$defs"]
    listed = {f"person.{k}" for k in defs["person"]["properties"]}
    listed |= {f"referral.{k}" for k in defs["referralDetails"]["properties"]}
    assert listed == set(ALL_FIELDS)
    assert SCHEMA["$id"].endswith("/1.0")
    assert "required" not in defs["person"] and "required" not in defs["referralDetails"]


def test_schema_uses_only_keywords_the_test_validator_checks() -> None:
    assert _keywords(SCHEMA) <= SUPPORTED_KEYWORDS


@pytest.mark.parametrize("broken", [
    {"person": {"first_name": None}},
    {"person": {"first_name": ""}},
    {"person": {}},
    {"person": {"contact_routes": []}},
    {"person": {"diagnosis": "x"}},
    {"referral": {"safeguarding_concern": False}},
    {"kind": "recall"},
    {"extra": 1},
])
def test_schema_rejects_nulls_empties_unknown_fields_and_wrong_kinds(broken: dict[str, Any]) -> None:
    body = build(patient=rich_patient()).body
    for key, value in broken.items():
        body[key] = value
    assert schema_errors(body) != []


def test_content_paths_match_fields_for_the_rich_example() -> None:
    packet = build(patient=rich_patient(), extras={"flags": [flag()]})
    assert content_paths(packet.body) == set(packet.fields)
