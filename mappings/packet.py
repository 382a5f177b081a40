"""The minimal referral packet a VCSE host receives, and the recall / cease notices.

A packet is an envelope (who, what, when; always present) plus content fields. Each content
field belongs to one consent data category and is disclosed only when the recipient's
data-sharing agreement allows it (`allowed_fields`), the consent decision permits its
category, and the source holds a value: anything else is absent, never null or empty
(docs/design.md, IG rule 2 "minimum necessary"). `Packet.fields` lists exactly the content paths
disclosed, for the audit. docs/packet.md has the field table and a worked example.

Pure: no I/O, no clock (`created_at` is a parameter).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from consent.categories import DataCategory
from consent.policy import Decision
from mappings.need_categories import coded_label
from profiles.systems import NHS_NUMBER

SCHEMA_URL = "/vcse/v1/schema/referral-packet"
SCHEMA_VERSION = "1.0"
# The JSON Schema (draft 2020-12) the gateway serves at SCHEMA_URL; shipped as package data.
SCHEMA_FILE = Path(__file__).parent / "data" / "referral-packet.schema.json"

# R4 Flag.category (http://hl7.org/fhir/R4/valueset-flag-category.html): `safety` is the
# category for "potential danger to the patient or others".
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
# UK Core Patient extensions (https://fhir.hl7.org.uk/StructureDefinition/...).
UKCORE_CONTACT_PREFERENCE = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ContactPreference"
UKCORE_NHS_COMMUNICATION = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSCommunication"
# Core extension on Patient, boolean (FHIR extensions pack: patient-interpreterRequired).
INTERPRETER_REQUIRED = "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired"
_NHS_DIGITS = re.compile(r"^[0-9]{10}$")
_FHIR_DATE = re.compile(r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$")  # R4 date datatype
# QuestionnaireResponse.item.linkId values we read (our convention, docs/packet.md).
WHAT_MATTERS_LINK_ID = "what-matters-to-me"
ACCESSIBILITY_LINK_ID = "accessibility-needs"

NOTICE_REASONS: dict[str, dict[str, str]] = {
    # recall: the referrer cancelled (ServiceRequest.status revoked / entered-in-error, as BaRS sends it)
    "recall": {
        "revoked": "The referrer has cancelled this referral.",
        "entered-in-error": "The referrer sent this referral in error.",
    },
    # cease: the lawful basis ended (docs/design.md IG rule 1: withdrawal sends recipients a cease notice)
    "cease": {
        "consent-withdrawn": "The person has withdrawn consent to share this referral with you.",
        "consent-expired": "The person's consent to share this referral with you has ended.",
    },
}


class DisclosureNotPermitted(Exception):
    """Raised when asked to build a packet for a decision that does not permit disclosure."""


@dataclass(frozen=True)
class Packet:
    """A built packet: the JSON body and the content field paths it discloses (for the audit)."""

    body: dict[str, Any]
    fields: list[str]


@dataclass(frozen=True)
class _Sources:
    referral: dict[str, Any]
    patient: dict[str, Any]
    questionnaire_responses: list[dict[str, Any]]
    flags: list[dict[str, Any]]
    created_at: datetime


@dataclass(frozen=True)
class FieldSpec:
    """One content field: its path in the body, its consent category and where its value comes from."""

    path: str
    category: DataCategory
    default: bool
    source: str
    extract: Callable[[_Sources], Any] = field(repr=False)


def build_packet(
    *,
    referral: dict[str, Any],
    patient: dict[str, Any] | None,
    extras: dict[str, Any],
    decision: Decision,
    allowed_fields: Collection[str],
    referral_id: str,
    packet_id: str,
    recipient: str,
    referrer: dict[str, Any],
    created_at: datetime,
) -> Packet:
    """Returns the minimal packet for one recipient: only allowed, permitted fields that hold a value."""
    if not decision.permit:
        raise DisclosureNotPermitted(decision.reason)
    allowed = frozenset(allowed_fields)
    unknown = allowed - frozenset(ALL_FIELDS)
    if unknown:
        # A misspelt agreement would silently withhold (or mean to release) data: refuse it.
        raise ValueError(f"unknown packet fields in the data-sharing agreement: {', '.join(sorted(unknown))}")
    sources = _Sources(
        referral=referral,
        patient=patient or {},
        questionnaire_responses=list(extras.get("questionnaire_responses") or []),
        flags=list(extras.get("flags") or []),
        created_at=_utc(created_at),
    )
    body: dict[str, Any] = {
        "schema": {"url": SCHEMA_URL, "version": SCHEMA_VERSION},
        "kind": "referral",
        "packet_id": packet_id,
        "referral_id": referral_id,
        "created_at": _timestamp(created_at),
        "recipient": recipient,
        "referrer": _referrer(referrer),
    }
    disclosed: list[str] = []
    for spec in FIELDS:
        # Extract only what may go: a field outside the agreement or consent is never even read.
        if spec.path not in allowed or spec.category.value not in decision.categories:
            continue
        value = spec.extract(sources)
        if _present(value):
            group, name = spec.path.split(".")
            body.setdefault(group, {})[name] = value
            disclosed.append(spec.path)
    return Packet(body=body, fields=disclosed)


def restrict(body: dict[str, Any], *, categories: Collection[str], allowed_fields: Collection[str]) -> Packet:
    """Returns a built packet narrowed to what may go now: content fields whose category the current
    consent decision permits and that the current agreement allows (the envelope always stays).

    A packet is built when the referral is offered; consent or the agreement may narrow before it is
    read or sent, and IG rule 1 asks for permission "at that moment", per data category.
    """
    cats, allowed = frozenset(categories), frozenset(allowed_fields)
    out = {k: v for k, v in body.items() if k not in _CONTENT_GROUPS}
    kept: list[str] = []
    for spec in FIELDS:
        group, name = spec.path.split(".")
        value = (body.get(group) or {}).get(name)
        if value is None or spec.path not in allowed or spec.category.value not in cats:
            continue
        out.setdefault(group, {})[name] = value
        kept.append(spec.path)
    return Packet(body=out, fields=kept)


def content_fields(body: dict[str, Any]) -> list[str]:
    """Returns the content field paths a packet body carries (what its disclosure audit must list)."""
    return [spec.path for spec in FIELDS if spec.path.split(".")[1] in (body.get(spec.path.split(".")[0]) or {})]


def notice_packet(
    kind: Literal["recall", "cease"],
    *,
    referral_id: str,
    packet_id: str,
    recipient: str,
    reason: str,
    created_at: datetime,
) -> dict[str, Any]:
    """Returns a recall or cease notice: the referral id and a coded reason, no personal data."""
    reasons = NOTICE_REASONS.get(kind)
    if reasons is None:
        raise ValueError(f"unknown notice kind {kind!r}: expected recall or cease")
    if reason not in reasons:
        # Coded reasons only, so free text (which could name the person) never reaches a host.
        raise ValueError(f"unknown {kind} reason {reason!r}: expected one of {', '.join(reasons)}")
    return {
        "schema": {"url": SCHEMA_URL, "version": SCHEMA_VERSION},
        "kind": kind,
        "packet_id": packet_id,
        "referral_id": referral_id,
        "created_at": _timestamp(created_at),
        "recipient": recipient,
        "reason": reason,
        "reason_text": reasons[reason],
    }


# --- extractors: each returns the field's value, or something empty when there is none ---


def _first_name(s: _Sources) -> str | None:
    """Patient.name.given[0], preferring use official, then usual, then unstated; never old/maiden."""
    rank = {"official": 0, "usual": 1, None: 2}
    names = [n for n in s.patient.get("name") or [] if n.get("use") not in ("old", "maiden")]
    for name in sorted(names, key=lambda n: rank.get(n.get("use"), 3)):
        given = _given(name)
        if given:
            return given
    return None


def _preferred_name(s: _Sources) -> str | None:
    """Patient.name with use nickname (else usual): given[0] or text, when it differs from first_name."""
    first = _first_name(s)
    for use in ("nickname", "usual"):
        for name in s.patient.get("name") or []:
            if name.get("use") == use:
                preferred = _given(name) or _text(name.get("text"))
                if preferred and preferred != first:
                    return preferred
    return None


def _contact_routes(s: _Sources) -> list[dict[str, str]]:
    """Patient.telecom with system phone, email or sms, by rank; use old is skipped."""
    telecom = sorted(s.patient.get("telecom") or [], key=lambda cp: cp.get("rank") or 2**31)
    routes: list[dict[str, str]] = []
    for cp in telecom:
        value = _text(cp.get("value"))
        if cp.get("system") not in ("phone", "email", "sms") or not value or cp.get("use") == "old":
            continue
        route = {"type": cp["system"], "value": value}
        if cp.get("use") in ("home", "work", "temp", "mobile"):  # R4 contact-point-use, less `old`
            route["use"] = cp["use"]
        routes.append(route)
    return routes


_DAYS = {
    "mon": "Monday",
    "tue": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}
# R4 EventTiming codes for parts of the day (http://hl7.org/fhir/R4/valueset-event-timing.html).
_WHEN = {
    "MORN": "morning",
    "MORN.early": "early morning",
    "MORN.late": "late morning",
    "NOON": "noon",
    "AFT": "afternoon",
    "AFT.early": "early afternoon",
    "AFT.late": "late afternoon",
    "EVE": "evening",
    "EVE.early": "early evening",
    "EVE.late": "late evening",
    "NIGHT": "night",
}


def _preferred_contact_time(s: _Sources) -> str | None:
    """UK Core ContactPreference.PreferredContactTimes (a Timing) rendered as plain text."""
    timing = _sub_extension(s.patient, UKCORE_CONTACT_PREFERENCE, "PreferredContactTimes", "valueTiming")
    if not isinstance(timing, dict):
        return None
    text = _text((timing.get("code") or {}).get("text"))
    if text:
        return text
    repeat = timing.get("repeat") or {}
    days = [_DAYS[d] for d in repeat.get("dayOfWeek") or [] if d in _DAYS]
    times = [_WHEN[w] for w in repeat.get("when") or [] if w in _WHEN]
    times += [str(t)[:5] for t in repeat.get("timeOfDay") or []]
    parts = [", ".join(days), ", ".join(times)]
    return "; ".join(p for p in parts if p) or None


def _language(s: _Sources) -> str | None:
    """Patient.communication.language (preferred first), else UK Core NHSCommunication.language."""
    comms = sorted(s.patient.get("communication") or [], key=lambda c: not c.get("preferred"))
    for comm in comms:
        label = _concept_label(comm.get("language"))
        if label:
            return label
    extension = _sub_extension(s.patient, UKCORE_NHS_COMMUNICATION, "language", "valueCodeableConcept")
    return _concept_label(extension)


def _interpreter_required(s: _Sources) -> bool | None:
    """UK Core NHSCommunication.interpreterRequired, else the core patient-interpreterRequired extension."""
    values = list(_sub_extensions(s.patient, UKCORE_NHS_COMMUNICATION, "interpreterRequired", "valueBoolean"))
    values += [e.get("valueBoolean") for e in _extensions(s.patient, INTERPRETER_REQUIRED)]
    flags = [v for v in values if isinstance(v, bool)]
    return any(flags) if flags else None


def _accessibility_needs(s: _Sources) -> list[str]:
    """UK Core ContactPreference.PreferredWrittenCommunicationFormat and answers to `accessibility-needs`."""
    fmt = _sub_extension(
        s.patient, UKCORE_CONTACT_PREFERENCE, "PreferredWrittenCommunicationFormat", "valueCodeableConcept"
    )
    return _unique([_concept_label(fmt), *_answers(s, ACCESSIBILITY_LINK_ID)])


def _need_categories(s: _Sources) -> list[str]:
    """ServiceRequest.reasonCode codings only (mappings/need_categories.py): never the concept's free text."""
    return _unique(coded_label(c) for c in s.referral.get("reasonCode") or [])


def _reason_text(s: _Sources) -> str:
    """ServiceRequest.reasonCode.text, then note.text, joined by newlines: the referrer's free text, which
    may be clinical, so it goes only to a host whose agreement names this field."""
    reasons = (_text(c.get("text")) for c in s.referral.get("reasonCode") or [] if isinstance(c, dict))
    notes = (_text(n.get("text")) for n in s.referral.get("note") or [])
    return "\n".join(_unique([*reasons, *notes]))


def _what_matters_to_me(s: _Sources) -> str:
    """Answers to QuestionnaireResponse.item with linkId `what-matters-to-me`, joined by newlines."""
    return "\n".join(_answers(s, WHAT_MATTERS_LINK_ID))


def _priority(s: _Sources) -> str | None:
    """ServiceRequest.priority (R4 request-priority: routine | urgent | asap | stat)."""
    priority = s.referral.get("priority")
    return priority if priority in ("routine", "urgent", "asap", "stat") else None


def _safeguarding_concern(s: _Sources) -> bool | None:
    """True when a message Flag is active (and not past Flag.period.end) with category safety or a
    code that mentions safeguarding. Only ever true: the detail never leaves the gateway."""
    for flag in s.flags:
        if flag.get("status") != "active" or _ended(flag.get("period"), s.created_at):
            continue
        safety = any(
            c.get("system") == FLAG_CATEGORY and c.get("code") == "safety"
            for concept in flag.get("category") or []
            for c in concept.get("coding") or []
        )
        code = flag.get("code") or {}
        words = [code.get("text") or ""] + [c.get("display") or "" for c in code.get("coding") or []]
        if safety or any("safeguard" in w.lower() for w in words):
            return True
    return None


def _nhs_number(s: _Sources) -> str | None:
    """Patient.identifier with the NHS number system, else ServiceRequest.subject.identifier.

    Only a 10-digit value is sent; the check digit was verified at ingest (profiles/)."""
    identifiers = list(s.patient.get("identifier") or [])
    identifiers.append((s.referral.get("subject") or {}).get("identifier") or {})
    for identifier in identifiers:
        value = identifier.get("value")
        if identifier.get("system") == NHS_NUMBER and isinstance(value, str) and _NHS_DIGITS.match(value):
            return value
    return None


def _date_of_birth(s: _Sources) -> str | None:
    """Patient.birthDate, when it is a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)."""
    birth = s.patient.get("birthDate")
    return birth if isinstance(birth, str) and _FHIR_DATE.match(birth) else None


def _address(s: _Sources) -> dict[str, Any]:
    """Patient.address: the home address first; use old is skipped."""
    addresses = [a for a in s.patient.get("address") or [] if a.get("use") != "old"]
    for address in sorted(addresses, key=lambda a: a.get("use") != "home"):
        out: dict[str, Any] = {}
        lines = [t for t in (_text(x) for x in address.get("line") or []) if t]
        if lines:
            out["lines"] = lines
        for source, target in (
            ("city", "city"),
            ("district", "district"),
            ("postalCode", "postcode"),
            ("text", "text"),
        ):
            value = _text(address.get(source))
            if value:
                out[target] = value
        if out:
            return out
    return {}


def _gender(s: _Sources) -> str | None:
    """Patient.gender (R4 administrative-gender)."""
    gender = s.patient.get("gender")
    return gender if gender in ("male", "female", "other", "unknown") else None


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("person.first_name", DataCategory.CONTACT_DETAILS, True, "Patient.name.given[0]", _first_name),
    FieldSpec(
        "person.preferred_name",
        DataCategory.CONTACT_DETAILS,
        True,
        "Patient.name (use nickname, else usual)",
        _preferred_name,
    ),
    FieldSpec(
        "person.contact_routes",
        DataCategory.CONTACT_DETAILS,
        True,
        "Patient.telecom (phone, email, sms)",
        _contact_routes,
    ),
    FieldSpec(
        "person.preferred_contact_time",
        DataCategory.CONTACT_DETAILS,
        True,
        "Patient.extension(UKCore-ContactPreference).PreferredContactTimes",
        _preferred_contact_time,
    ),
    FieldSpec(
        "person.language", DataCategory.COMMUNICATION_AND_ACCESS, True, "Patient.communication.language", _language
    ),
    FieldSpec(
        "person.interpreter_required",
        DataCategory.COMMUNICATION_AND_ACCESS,
        True,
        "Patient.extension(UKCore-NHSCommunication).interpreterRequired",
        _interpreter_required,
    ),
    FieldSpec(
        "person.accessibility_needs",
        DataCategory.COMMUNICATION_AND_ACCESS,
        True,
        "Patient.extension(UKCore-ContactPreference).PreferredWrittenCommunicationFormat; "
        "QuestionnaireResponse.item(accessibility-needs)",
        _accessibility_needs,
    ),
    FieldSpec("person.nhs_number", DataCategory.IDENTIFIERS, False, "Patient.identifier (NHS number)", _nhs_number),
    FieldSpec("person.date_of_birth", DataCategory.DEMOGRAPHICS, False, "Patient.birthDate", _date_of_birth),
    FieldSpec("person.address", DataCategory.DEMOGRAPHICS, False, "Patient.address", _address),
    FieldSpec("person.gender", DataCategory.DEMOGRAPHICS, False, "Patient.gender", _gender),
    FieldSpec(
        "referral.need_categories",
        DataCategory.NEEDS_AND_CONCERNS,
        True,
        "ServiceRequest.reasonCode.coding (coded needs only)",
        _need_categories,
    ),
    FieldSpec(
        "referral.reason_text",
        DataCategory.NEEDS_AND_CONCERNS,
        False,
        "ServiceRequest.reasonCode.text; ServiceRequest.note.text",
        _reason_text,
    ),
    FieldSpec("referral.priority", DataCategory.NEEDS_AND_CONCERNS, True, "ServiceRequest.priority", _priority),
    FieldSpec(
        "referral.what_matters_to_me",
        DataCategory.WHAT_MATTERS_TO_ME,
        True,
        "QuestionnaireResponse.item(what-matters-to-me).answer",
        _what_matters_to_me,
    ),
    FieldSpec(
        "referral.safeguarding_concern",
        DataCategory.SAFEGUARDING,
        True,
        "Flag (active; category safety or code mentions safeguarding)",
        _safeguarding_concern,
    ),
)

ALL_FIELDS: tuple[str, ...] = tuple(spec.path for spec in FIELDS)
FIELD_CATEGORY: dict[str, str] = {spec.path: spec.category.value for spec in FIELDS}
# docs/design.md IG rule 2: no NHS number, diagnosis, medication or full address unless agreed;
# the referrer's free text (reasons and notes) is left out too, because it can carry clinical detail.
DEFAULT_ALLOWED_FIELDS: frozenset[str] = frozenset(spec.path for spec in FIELDS if spec.default)
_CONTENT_GROUPS = frozenset(spec.path.split(".")[0] for spec in FIELDS)


# --- small readers over FHIR JSON ---


def _answers(s: _Sources, link_id: str) -> Iterator[str]:
    """Yields text answers to items with link_id in completed or amended QuestionnaireResponses."""
    for response in s.questionnaire_responses:
        if response.get("status") in ("completed", "amended"):
            yield from _item_answers(response.get("item") or [], link_id)


def _item_answers(items: list[dict[str, Any]], link_id: str) -> Iterator[str]:
    for item in items:
        for answer in item.get("answer") or []:
            if item.get("linkId") == link_id:
                coding = answer.get("valueCoding") or {}
                text = _text(answer.get("valueString")) or _text(coding.get("display"))
                if text:
                    yield text
            yield from _item_answers(answer.get("item") or [], link_id)
        yield from _item_answers(item.get("item") or [], link_id)


def _extensions(resource: dict[str, Any], url: str) -> Iterator[dict[str, Any]]:
    return (e for e in resource.get("extension") or [] if e.get("url") == url)


def _sub_extensions(resource: dict[str, Any], url: str, sub_url: str, value_key: str) -> Iterator[Any]:
    for ext in _extensions(resource, url):
        for sub in ext.get("extension") or []:
            if sub.get("url") == sub_url and value_key in sub:
                yield sub[value_key]


def _sub_extension(resource: dict[str, Any], url: str, sub_url: str, value_key: str) -> Any:
    return next(_sub_extensions(resource, url, sub_url, value_key), None)


def _concept_label(concept: Any) -> str | None:
    """CodeableConcept.text, else the first coding display, else its code."""
    if not isinstance(concept, dict):
        return None
    text = _text(concept.get("text"))
    if text:
        return text
    for coding in concept.get("coding") or []:
        label = _text(coding.get("display")) or _text(coding.get("code"))
        if label:
            return label
    return None


def _given(name: dict[str, Any]) -> str | None:
    given = name.get("given") or []
    return _text(given[0]) if given else None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _unique(values: Any) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _present(value: Any) -> bool:
    """A value worth sending: not None and not an empty string, list or object."""
    return value is not None and value != "" and value != [] and value != {}


def _ended(period: dict[str, Any] | None, at: datetime) -> bool:
    """True when Period.end is readable and passed; a date-only end covers that whole day in UTC."""
    end = (period or {}).get("end")
    if not isinstance(end, str):
        return False
    try:
        if len(end) == 10:
            return at >= datetime.fromisoformat(end).replace(tzinfo=UTC) + timedelta(days=1)
        instant = datetime.fromisoformat(end)
    except ValueError:
        return False
    return instant.tzinfo is not None and at >= instant


def _referrer(referrer: dict[str, Any]) -> dict[str, str]:
    out = {"organisation": str(referrer["organisation"])}
    if referrer.get("name"):
        out["name"] = str(referrer["name"])
    return out


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    return moment.astimezone(UTC)


def _timestamp(moment: datetime) -> str:
    return _utc(moment).isoformat(timespec="seconds")
