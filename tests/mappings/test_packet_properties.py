"""Properties of the packet builder over random agreements, consents, referrals and patients."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consent.categories import ALL_CATEGORIES
from consent.policy import Decision
from mappings.packet import (
    ALL_FIELDS,
    FIELD_CATEGORY,
    FLAG_CATEGORY,
    UKCORE_CONTACT_PREFERENCE,
    UKCORE_NHS_COMMUNICATION,
    Packet,
    build_packet,
)
from profiles.systems import NHS_NUMBER
from tests.mappings.test_packet import schema_errors

CREATED = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)

# Short texts that include blanks and whitespace, so "no value" cases come up often.
text = st.sampled_from(["", " ", "Alex", "Sam Lee", "  padded  ", "07700900123", "x@example.org"]) | st.text(
    max_size=6
)
concept = st.fixed_dictionaries({}, optional={
    "text": text,
    "coding": st.lists(st.fixed_dictionaries({}, optional={"code": text, "display": text}), max_size=2),
})

human_name = st.fixed_dictionaries({}, optional={
    "use": st.sampled_from(["official", "usual", "nickname", "old", "maiden", "temp", "anonymous"]),
    "given": st.lists(text, max_size=2),
    "text": text,
})
contact_point = st.fixed_dictionaries({}, optional={
    "system": st.sampled_from(["phone", "email", "sms", "fax", "url", "pager", "other"]),
    "value": text,
    "use": st.sampled_from(["home", "work", "temp", "old", "mobile", "cell"]),
    "rank": st.integers(1, 3),
})
contact_preference = st.builds(
    lambda days, when, fmt: {"url": UKCORE_CONTACT_PREFERENCE, "extension": [
        {"url": "PreferredContactTimes", "valueTiming": {"repeat": {"dayOfWeek": days, "when": when}}},
        {"url": "PreferredWrittenCommunicationFormat", "valueCodeableConcept": fmt},
    ]},
    st.lists(st.sampled_from(["mon", "tue", "sat"]), max_size=2),
    st.lists(st.sampled_from(["MORN", "EVE", "PCM"]), max_size=2),
    concept,
)
nhs_communication = st.builds(
    lambda language, interpreter: {"url": UKCORE_NHS_COMMUNICATION, "extension": [
        {"url": "language", "valueCodeableConcept": language},
        {"url": "interpreterRequired", "valueBoolean": interpreter},
    ]},
    concept, st.booleans(),
)
address = st.fixed_dictionaries({}, optional={
    "use": st.sampled_from(["home", "work", "temp", "old"]),
    "line": st.lists(text, max_size=2),
    "city": text,
    "postalCode": text,
})
communication = st.fixed_dictionaries({"language": concept}, optional={"preferred": st.booleans()})
patient = st.fixed_dictionaries({"resourceType": st.just("Patient")}, optional={
    "name": st.lists(human_name, max_size=3),
    "telecom": st.lists(contact_point, max_size=3),
    "extension": st.lists(contact_preference | nhs_communication, max_size=2),
    "communication": st.lists(communication, max_size=2),
    "identifier": st.lists(st.builds(lambda v: {"system": NHS_NUMBER, "value": v},
                                     st.from_regex(r"\A[0-9]{10}\Z") | text), max_size=1),
    "birthDate": st.dates().map(date.isoformat) | st.sampled_from(["1950", "1950-02", "999-01-01", ""]),
    "address": st.lists(address, max_size=2),
    "gender": st.sampled_from(["male", "female", "other", "unknown"]),
})
referral = st.fixed_dictionaries({"resourceType": st.just("ServiceRequest")}, optional={
    "reasonCode": st.lists(concept, max_size=3),
    "note": st.lists(st.fixed_dictionaries({"text": text}), max_size=2),
    "priority": st.sampled_from(["routine", "urgent", "asap", "stat", "soon"]),
})
answer_item = st.builds(
    lambda link, answer: {"linkId": link, "answer": [{"valueString": answer}]},
    st.sampled_from(["what-matters-to-me", "accessibility-needs", "other"]), text,
)
questionnaire_response = st.builds(
    lambda status, items: {"resourceType": "QuestionnaireResponse", "status": status, "item": items},
    st.sampled_from(["completed", "amended", "in-progress"]), st.lists(answer_item, max_size=3),
)
flag = st.builds(
    lambda status, category, words: {"resourceType": "Flag", "status": status, "code": {"text": words},
                                     "category": [{"coding": [{"system": FLAG_CATEGORY, "code": category}]}]},
    st.sampled_from(["active", "inactive"]), st.sampled_from(["safety", "clinical", "admin"]),
    st.sampled_from(["Safeguarding: adult at risk", "Dog in property", ""]),
)
extras = st.fixed_dictionaries({}, optional={
    "questionnaire_responses": st.lists(questionnaire_response, max_size=2),
    "flags": st.lists(flag, max_size=2),
})
agreement = st.frozensets(st.sampled_from(ALL_FIELDS))
permitted = st.frozensets(st.sampled_from(sorted(ALL_CATEGORIES)), min_size=1)


def build(ref: dict[str, Any], pat: dict[str, Any] | None, more: dict[str, Any], allowed: frozenset[str],
          categories: frozenset[str]) -> Packet:
    return build_packet(
        referral=ref, patient=pat, extras=more,
        decision=Decision(True, categories, "c1", "property test"),
        allowed_fields=allowed, referral_id="SPR-1", packet_id="pkt-1", recipient="8VC01",
        referrer={"organisation": "A81001", "name": "Dr Jones"}, created_at=CREATED,
    )


def content_paths(body: dict[str, Any]) -> list[str]:
    present = {f"{group}.{name}" for group in ("person", "referral") for name in body.get(group, {})}
    return [path for path in ALL_FIELDS if path in present]


def empty_values(value: Any) -> list[Any]:
    """Returns every None, empty string, empty list or empty object anywhere in value."""
    if value is None or value in ("", [], {}):
        return [value]
    if isinstance(value, dict):
        return [e for v in value.values() for e in empty_values(v)]
    if isinstance(value, list):
        return [e for v in value for e in empty_values(v)]
    return []


@settings(max_examples=300, deadline=None)
@given(referral, st.none() | patient, extras, agreement, permitted)
def test_only_agreed_and_consented_fields_appear_and_fields_lists_exactly_them(
    ref: dict[str, Any], pat: dict[str, Any] | None, more: dict[str, Any], allowed: frozenset[str],
    categories: frozenset[str],
) -> None:
    packet = build(ref, pat, more, allowed, categories)
    paths = content_paths(packet.body)
    for path in paths:
        assert path in allowed
        assert FIELD_CATEGORY[path] in categories
    assert packet.fields == paths
    assert set(packet.body) - {"person", "referral"} == {
        "schema", "kind", "packet_id", "referral_id", "created_at", "recipient", "referrer"}
    assert empty_values(packet.body) == []
    assert schema_errors(packet.body) == []


@settings(max_examples=200, deadline=None)
@given(referral, patient, extras, agreement, permitted)
def test_narrowing_agreement_or_consent_only_removes_fields_never_changes_them(
    ref: dict[str, Any], pat: dict[str, Any], more: dict[str, Any], allowed: frozenset[str],
    categories: frozenset[str],
) -> None:
    full = build(ref, pat, more, frozenset(ALL_FIELDS), ALL_CATEGORIES)
    narrow = build(ref, pat, more, allowed, categories)
    expected = [p for p in full.fields if p in allowed and FIELD_CATEGORY[p] in categories]
    assert narrow.fields == expected
    for path in narrow.fields:
        group, name = path.split(".")
        assert narrow.body[group][name] == full.body[group][name]
