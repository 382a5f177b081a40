"""REF^I12/I13/I14 to the FHIR R4 message Bundle a GP system posts to `$process-message`.

The Bundle has the same shape as a BaRS-style referral (MessageHeader, ServiceRequest, Patient,
Practitioner(s), the sender's Organization), so the same profile checks and pipeline apply to
both routes. Field-by-field choices follow the HL7 v2-to-FHIR mapping guide (segment maps
PID[Patient], PRD[Practitioner], RF1[ServiceRequest]; data type maps CX, XPN, XAD, XTN, CWE) and
are tabulated in docs/hl7v2.md.

Every fullUrl is a UUID v5 of (MSH-3, MSH-4, MSH-10, role), so a resent message maps to the
same Bundle. Content the referral profile needs and cannot do without raises V2Rejection('AE').
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from mappings.v2.parse import (
    ERR_DATA_TYPE,
    ERR_SEGMENT_SEQUENCE,
    ERR_TABLE_VALUE_NOT_FOUND,
    ParsedV2,
    V2Rejection,
    V2Segment,
    V2Value,
)
from profiles import nhs_number
from profiles.systems import (
    BARS_MESSAGE_EVENTS,
    BARS_MESSAGE_REASON,
    BARS_SR_CATEGORY,
    LOCAL_BASE,
    LOINC,
    NHS_NUMBER,
    ODS_CODE,
    SNOMED,
    SP_REFERRAL,
)

# Our identifier namespaces for values that only mean something at the sending site.
V2_REFERRAL_ID = f"{LOCAL_BASE}/Id/v2-referral/"  # + MSH-4: RF1-6, else MSH-10
V2_MESSAGE_ID = f"{LOCAL_BASE}/Id/v2-message/"  # + MSH-4: MSH-10
V2_PATIENT_ID = f"{LOCAL_BASE}/Id/v2-patient/"  # + PID-3 assigning authority
V2_PROVIDER_ID = f"{LOCAL_BASE}/Id/v2-provider/"  # + PRD-7 qualifier
V2_FACILITY_ID = f"{LOCAL_BASE}/Id/v2-facility"  # MSH-4 that is not an ODS code
V2_LOCAL_CODES = f"{LOCAL_BASE}/CodeSystem/v2-local/"  # + MSH-4 / coding system name
V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-"  # + 4-digit HL7 table number

# UK Core practitioner identifier systems (UK Core Practitioner profile, identifier slices).
PRACTITIONER_SYSTEMS = {
    "GMC": "https://fhir.hl7.org.uk/Id/gmc-number",
    "GMP": "https://fhir.hl7.org.uk/Id/gmp-number",
    "NMC": "https://fhir.hl7.org.uk/Id/nmc-number",
    "SDS": "https://fhir.nhs.uk/Id/sds-user-id",
}
# The NHS number's OID, which a sender may put in CX.4.2 instead of the namespace "NHS".
NHS_NUMBER_OID = "2.16.840.1.113883.2.1.4.1"
# ODS codes: 3 characters (trusts, ICBs), 5 (trust sites), 6 (GP practices).
_ODS_CODE = re.compile(r"[A-Z0-9]{3}|[A-Z0-9]{5,6}")

# MSH-9.2 trigger -> (MessageHeader.reason, fixed ServiceRequest.status); BaRS cancels with `update`.
_EVENTS = {"I12": ("new", None), "I13": ("update", None), "I14": ("update", "revoked")}
# RF1-2 (HL7 table 0280) -> ServiceRequest.priority (v2-to-FHIR ConceptMap; U from later versions).
_PRIORITY = {"R": "routine", "S": "stat", "A": "asap", "U": "urgent"}
# PID-8 (HL7 table 0001) -> Patient.gender (v2-to-FHIR ConceptMap AdministrativeSex).
_GENDER = {"M": "male", "F": "female", "O": "other", "A": "other", "N": "other", "U": "unknown"}
# XPN.7 (table 0200) -> HumanName.use, for the codes with a clear FHIR counterpart.
_NAME_USE = {"L": "official", "D": "usual", "N": "nickname", "M": "maiden"}
# XAD.7 (table 0190) -> Address.use.
_ADDRESS_USE = {"H": "home", "B": "work", "C": "temp", "BA": "old"}
# XTN.2 (table 0201) -> ContactPoint.use.
_TELECOM_USE = {"PRN": "home", "ORN": "home", "VHN": "home", "WPN": "work", "EMR": "temp"}
# OBX-2 value types whose OBX-5 is readable text (others, e.g. ED and RP, are not carried).
_TEXT_VALUE_TYPES = {"ST", "TX", "FT", "NM", "SN", "CE", "CWE", "CNE", "DT", "TS", "DTM", "TM", "ID", "IS"}

_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"{LOCAL_BASE}/v2-message")
_V2_DATETIME = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?"
)


def ref_to_bundle(msg: ParsedV2, *, received_at: datetime) -> dict[str, Any]:
    """Returns the FHIR R4 message Bundle for a REF^I12/I13/I14. Raises V2Rejection('AE') for missing content."""
    facility = msg.sending_facility or msg.sending_application
    if not facility:
        raise V2Rejection("AE", "MSH", 4, "MSH-4 (sending facility) is empty: the referral needs a source.")
    ids = _FullUrls(msg)
    rf1 = _required_segment(msg, "RF1")
    pid = _required_segment(msg, "PID")
    patient, nhs = _patient(pid, facility)
    requester = _provider(msg, "RP")
    if requester is None:
        raise V2Rejection(
            "AE", "PRD", 1, "No PRD segment with PRD-1 role RP (referring provider).", code=ERR_SEGMENT_SEQUENCE
        )
    performer = _provider(msg, "RT")
    reason, fixed_status = _EVENTS[msg.trigger_event]
    service_request = _service_request(msg, rf1, facility, ids, nhs, fixed_status, received_at, performer is not None)
    if performer is not None:
        service_request["performer"] = [_performer_reference(performer, ids.url("performer"))]
    entries = [
        (ids.url("message-header"), _message_header(msg, reason, ids)),
        (ids.url("service-request"), service_request),
        (ids.url("patient"), patient),
        (ids.url("requester"), requester),
        *([(ids.url("performer"), performer)] if performer is not None else []),
        (ids.url("sender"), _organization(facility)),
    ]
    return {
        "resourceType": "Bundle",
        "id": ids.uuid("bundle"),
        "identifier": {"system": V2_MESSAGE_ID + quote(facility, safe=""), "value": msg.control_id},
        "type": "message",
        "timestamp": _instant(msg.timestamp) or _utc(received_at).isoformat(timespec="seconds"),
        "entry": [{"fullUrl": url, "resource": resource} for url, resource in entries],
    }


class _FullUrls:
    """Stable `urn:uuid:` fullUrls: UUID v5 of MSH-3, MSH-4, MSH-10 and the entry's role."""

    def __init__(self, msg: ParsedV2) -> None:
        # Length-prefixed parts, so that ("AB", "C") and ("A", "BC") never collide.
        self._key = "".join(f"{len(p)}:{p}" for p in (msg.sending_application, msg.sending_facility, msg.control_id))

    def uuid(self, role: str) -> str:
        return str(uuid.uuid5(_UUID_NAMESPACE, f"{self._key}{len(role)}:{role}"))

    def url(self, role: str) -> str:
        return f"urn:uuid:{self.uuid(role)}"


def _required_segment(msg: ParsedV2, name: str) -> V2Segment:
    segment = msg.segment(name)
    if segment is None:
        raise V2Rejection(
            "AE", name, None, f"The {name} segment is missing; a referral needs it.", code=ERR_SEGMENT_SEQUENCE
        )
    return segment


def _message_header(msg: ParsedV2, reason: str, ids: _FullUrls) -> dict[str, Any]:
    """MessageHeader as BaRS sends it: event servicerequest-request, reason new/update, focus the request."""
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "eventCoding": {"system": BARS_MESSAGE_EVENTS, "code": "servicerequest-request"},
        "reason": {"coding": [{"system": BARS_MESSAGE_REASON, "code": reason}]},
    }
    if msg.receiving_facility or msg.receiving_application:
        destination: dict[str, Any] = {"endpoint": _endpoint(msg.receiving_facility or msg.receiving_application)}
        if msg.receiving_application:
            destination["name"] = msg.receiving_application  # MSH-5
        header["destination"] = [destination]
    header["sender"] = {"reference": ids.url("sender")}
    source: dict[str, Any] = {"endpoint": _endpoint(msg.sending_facility or msg.sending_application)}
    if msg.sending_application:
        source["name"] = msg.sending_application  # MSH-3
    header["source"] = source
    header["focus"] = [{"reference": ids.url("service-request")}]
    return header


def _service_request(
    msg: ParsedV2,
    rf1: V2Segment,
    facility: str,
    ids: _FullUrls,
    nhs: str,
    fixed_status: str | None,
    received_at: datetime,
    has_performer: bool,
) -> dict[str, Any]:
    referral_id = rf1.first(6).component(1) or msg.control_id  # RF1-6 EI.1, else MSH-10
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": V2_REFERRAL_ID + quote(facility, safe=""), "value": referral_id}],
        "status": fixed_status or _status(rf1, msg.trigger_event),
        "intent": "order",
        "category": [{"coding": [{"system": BARS_SR_CATEGORY, "code": "referral", "display": "Transfer of Care"}]}],
    }
    priority = _priority(rf1)
    if priority:
        request["priority"] = priority
    request["code"] = _referral_code(rf1, facility)
    request["subject"] = {"reference": ids.url("patient"), "identifier": {"system": NHS_NUMBER, "value": nhs}}
    request["authoredOn"] = _authored_on(msg, rf1, received_at)
    request["requester"] = {"reference": ids.url("requester")}
    reason = _codeable(rf1.first(10), facility)
    if reason:
        request["reasonCode"] = [reason]
    notes = _notes(msg, facility)
    if notes:
        request["note"] = [{"text": text} for text in notes]
    return request


def _status(rf1: V2Segment, trigger: str) -> str:
    """RF1-1 (table 0283) -> ServiceRequest.status: A, P or empty -> active; R, E -> revoked on I13."""
    code = rf1.first(1).component(1).upper()
    if code in ("", "A", "P"):
        return "active"
    if code in ("R", "E") and trigger == "I13":
        return "revoked"
    if code in ("R", "E"):
        raise V2Rejection(
            "AE",
            "RF1",
            1,
            "RF1-1 says the referral is rejected or expired, so it cannot open a new social prescribing referral.",
            code=ERR_TABLE_VALUE_NOT_FOUND,
        )
    raise V2Rejection(
        "AE", "RF1", 1, "RF1-1 is not an HL7 table 0283 referral status (A, P, R, E).", code=ERR_TABLE_VALUE_NOT_FOUND
    )


def _priority(rf1: V2Segment) -> str | None:
    code = rf1.first(2).component(1).upper()
    if not code:
        return None
    if code not in _PRIORITY:
        raise V2Rejection(
            "AE",
            "RF1",
            2,
            "RF1-2 is not a referral priority this gateway knows (R, S, A, U).",
            code=ERR_TABLE_VALUE_NOT_FOUND,
        )
    return _PRIORITY[code]


def _referral_code(rf1: V2Segment, facility: str) -> dict[str, Any]:
    """The SP referral concept, plus RF1-3 (referral type) as the sender coded it."""
    code: dict[str, Any] = {
        "coding": [{"system": SNOMED, "code": SP_REFERRAL, "display": "Referral to social prescribing service"}]
    }
    referral_type = _codeable(rf1.first(3), facility)
    if referral_type:
        code["coding"].extend(referral_type.get("coding", []))
        if "text" in referral_type:
            code["text"] = referral_type["text"]
    return code


def _authored_on(msg: ParsedV2, rf1: V2Segment, received_at: datetime) -> str:
    """RF1-7 (effective date), else MSH-7, else the time we received the message.

    A date-only RF1-7 on the day of MSH-7 takes MSH-7's time, the more precise record of the
    same day; other date-only values stay dates (a valid FHIR dateTime needs no zone then).
    """
    effective = rf1.first(7).component(1)
    authored = _datetime(effective, "RF1", 7) if effective else None
    sent = _datetime(msg.timestamp, "MSH", 7) if msg.timestamp else None
    if authored and len(authored) == 10 and sent and sent.startswith(authored) and len(sent) > 10:
        return sent
    return authored or sent or _utc(received_at).isoformat(timespec="seconds")


def _patient(pid: V2Segment, facility: str) -> tuple[dict[str, Any], str]:
    """Returns (Patient, NHS number) from PID; raises AE when PID-3 has no valid NHS number."""
    nhs = None
    others = []
    for cx in pid.get(3):
        value = cx.component(1)
        if not value:
            continue
        if _is_nhs_identifier(cx):
            nhs = nhs or value
            continue
        authority = cx.component(4) or cx.component(4, 2) or facility
        identifier: dict[str, Any] = {"system": V2_PATIENT_ID + quote(authority, safe=""), "value": value}
        if cx.component(5):
            identifier["type"] = {"coding": [{"system": V2_TABLE + "0203", "code": cx.component(5)}]}
        others.append(identifier)
    if nhs is None:
        raise V2Rejection(
            "AE", "PID", 3, "PID-3 has no NHS number (a repetition with assigning authority NHS or identifier type NH)."
        )
    problem = nhs_number.explain(nhs)
    if problem:
        raise V2Rejection("AE", "PID", 3, f"PID-3 NHS number is not valid: {problem}", code=ERR_DATA_TYPE)
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": [{"system": NHS_NUMBER, "value": nhs}, *others]}
    names = [n for n in (_human_name(v) for v in pid.get(5)) if n]
    if names:
        patient["name"] = names
    telecom = [t for t in (_contact_point(v, "home") for v in pid.get(13)) if t]
    telecom += [t for t in (_contact_point(v, "work") for v in pid.get(14)) if t]
    if telecom:
        patient["telecom"] = telecom
    gender = _GENDER.get(pid.first(8).component(1).upper())
    if gender:
        patient["gender"] = gender
    birth = pid.first(7).component(1)
    if birth:
        patient["birthDate"] = _date(birth, "PID", 7)
    addresses = [a for a in (_address(v) for v in pid.get(11)) if a]
    if addresses:
        patient["address"] = addresses
    return patient, nhs


def _is_nhs_identifier(cx: V2Value) -> bool:
    """CX.4 (assigning authority) NHS or the NHS number OID, or CX.5 type NH with no other authority."""
    namespace, universal = cx.component(4).upper(), cx.component(4, 2)
    if namespace == "NHS" or universal == NHS_NUMBER_OID:
        return True
    return cx.component(5).upper() == "NH" and not namespace and not universal


def _provider(msg: ParsedV2, role: str) -> dict[str, Any] | None:
    """Practitioner from the first PRD whose PRD-1 (table 0286) has `role`; None when there is none."""
    for prd in msg.all("PRD"):
        if any(r.component(1).upper() == role for r in prd.get(1)):
            return _practitioner(prd, msg.sending_facility or msg.sending_application)
    return None


def _practitioner(prd: V2Segment, facility: str) -> dict[str, Any]:
    practitioner: dict[str, Any] = {"resourceType": "Practitioner"}
    identifiers = [i for i in (_provider_identifier(v, facility) for v in prd.get(7)) if i]
    if identifiers:
        practitioner["identifier"] = identifiers
    names = [n for n in (_human_name(v) for v in prd.get(2)) if n]
    if names:
        practitioner["name"] = names
    if not identifiers and not names:
        raise V2Rejection(
            "AE", "PRD", 2, "A PRD segment has neither a name (PRD-2) nor an identifier (PRD-7).", sequence=prd.sequence
        )
    telecom = [t for t in (_contact_point(v, "work") for v in prd.get(5)) if t]
    if telecom:
        practitioner["telecom"] = telecom
    addresses = [a for a in (_address(v) for v in prd.get(3)) if a]
    if addresses:
        practitioner["address"] = addresses
    return practitioner


def _provider_identifier(value: V2Value, facility: str) -> dict[str, Any] | None:
    """PRD-7 (PLN): ID number; the qualifier is PLN.2 (type), or PLN.4 when a sender puts it there."""
    number = value.component(1)
    if not number:
        return None
    qualifier = value.component(2) or (value.component(4) if not value.component(4).isdigit() else "")
    system = PRACTITIONER_SYSTEMS.get(qualifier.upper())
    if system is None:
        system = V2_PROVIDER_ID + quote(qualifier or facility, safe="")
    return {"system": system, "value": number}


def _performer_reference(performer: dict[str, Any], url: str) -> dict[str, Any]:
    reference: dict[str, Any] = {"reference": url}
    if performer.get("identifier"):
        reference["identifier"] = performer["identifier"][0]
    return reference


def _organization(facility: str) -> dict[str, Any]:
    return {"resourceType": "Organization", "identifier": [_facility_identifier(facility)]}


def _facility_identifier(facility: str) -> dict[str, str]:
    """MSH-4 as an ODS code when it has an ODS code's shape, else as a local identifier."""
    if _ODS_CODE.fullmatch(facility):
        return {"system": ODS_CODE, "value": facility}
    return {"system": V2_FACILITY_ID, "value": facility}


def _endpoint(facility: str) -> str:
    identifier = _facility_identifier(facility)
    return f"{identifier['system']}|{quote(identifier['value'], safe='')}"


def _human_name(value: V2Value) -> dict[str, Any] | None:
    """XPN -> HumanName: XPN.1.1 family, XPN.2 and XPN.3 given, XPN.5 prefix, XPN.4/XPN.6 suffix, XPN.7 use."""
    name: dict[str, Any] = {}
    use = _NAME_USE.get(value.component(7).upper())
    if use:
        name["use"] = use
    if value.component(1):
        name["family"] = value.component(1)
    given = [g for g in (value.component(2), value.component(3)) if g]
    if given:
        name["given"] = given
    if value.component(5):
        name["prefix"] = [value.component(5)]
    suffix = [s for s in (value.component(4), value.component(6)) if s]
    if suffix:
        name["suffix"] = suffix
    return name if ("family" in name or "given" in name) else None


def _address(value: V2Value) -> dict[str, Any] | None:
    """XAD -> Address: XAD.1.1 and XAD.2 lines, XAD.3 city, XAD.4 state, XAD.5 postcode, XAD.6 country."""
    address: dict[str, Any] = {}
    use = _ADDRESS_USE.get(value.component(7).upper())
    if use:
        address["use"] = use
    lines = [line for line in (value.component(1), value.component(2)) if line]
    if lines:
        address["line"] = lines
    for key, number in (("city", 3), ("state", 4), ("postalCode", 5), ("country", 6)):
        if value.component(number):
            address[key] = value.component(number)
    return address if set(address) - {"use"} else None


def _contact_point(value: V2Value, default_use: str) -> dict[str, Any] | None:
    """XTN -> ContactPoint: XTN.3 equipment (CP mobile, FX fax, Internet email), XTN.2 use."""
    equipment, use_code = value.component(3).upper(), value.component(2).upper()
    if equipment in ("INTERNET", "X.400") or use_code == "NET":
        email = value.component(4) or value.component(1)
        return {"system": "email", "value": email} if email else None
    number = (
        value.component(1)
        or value.component(12)
        or " ".join(p for p in (value.component(5), value.component(6), value.component(7)) if p)
    )
    if not number:
        return None
    extension = value.component(8)
    point: dict[str, Any] = {
        "system": "fax" if equipment == "FX" else "phone",
        "value": f"{number} ext. {extension}" if extension else number,
    }
    point["use"] = "mobile" if equipment == "CP" else _TELECOM_USE.get(use_code, default_use)
    return point


def _codeable(value: V2Value, facility: str) -> dict[str, Any] | None:
    """CE/CWE -> CodeableConcept: triplets (1-3) and (4-6) as codings, text from .2 (else .9).

    A lone first component with no coding system and no text is free text, as senders use
    RF1-10 and RF1-3 for a plain-language reason; it becomes CodeableConcept.text only.
    """
    if not value:
        return None
    code, text, system = value.component(1), value.component(2), value.component(3)
    if code and not text and not system and not value.component(4):
        return {"text": code}
    codings = []
    for c, t, s in ((code, text, system), (value.component(4), value.component(5), value.component(6))):
        if c:
            # FHIR `code` allows single inner spaces only (R4 datatypes: code).
            coding = {"system": _code_system(s, facility), "code": " ".join(c.split())}
            if t:
                coding["display"] = t
            codings.append(coding)
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    if text or value.component(9):
        concept["text"] = text or value.component(9)
    return concept or None


def _code_system(name: str, facility: str) -> str:
    """CE.3 coding system name (HL7 table 0396) -> FHIR system URI; unknown names stay local to the sender."""
    upper = name.upper()
    table = re.fullmatch(r"HL7(\d{3,4})", upper)
    if table:
        return V2_TABLE + table.group(1).zfill(4)
    known = {
        "SCT": SNOMED,
        "SNM": SNOMED,
        "LN": LOINC,
        "I10": "http://hl7.org/fhir/sid/icd-10",
        "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    }
    if upper in known:
        return known[upper]
    return V2_LOCAL_CODES + quote(facility, safe="") + "/" + quote(name or "L", safe="")


def _notes(msg: ParsedV2, facility: str) -> list[str]:
    """NTE-3 comments, then DG1 diagnoses and readable OBX results, as ServiceRequest.note texts."""
    notes = []
    for nte in msg.all("NTE"):
        text = "\n".join(v.text() for v in nte.get(3)).strip()
        if text:
            notes.append(text)
    for dg1 in msg.all("DG1"):
        diagnosis = dg1.first(4).text() or _concept_text(dg1.first(3), facility)
        if diagnosis:
            notes.append(f"Diagnosis: {diagnosis}")
    for obx in msg.all("OBX"):
        result = _observation_text(obx, facility)
        if result:
            notes.append(result)
    return notes


def _observation_text(obx: V2Segment, facility: str) -> str | None:
    value_type = obx.first(2).component(1).upper()
    if value_type not in _TEXT_VALUE_TYPES:
        return None
    if value_type in ("CE", "CWE", "CNE"):
        values = [_concept_text(v, facility) for v in obx.get(5)]
    elif value_type in ("ST", "TX", "FT"):
        values = [v.text() for v in obx.get(5)]
    else:
        values = [v.raw.replace(v.encoding.component, " ").strip() for v in obx.get(5)]
    shown = "; ".join(v for v in values if v)
    if not shown:
        return None
    units = obx.first(6).component(2) or obx.first(6).component(1)
    label = _concept_text(obx.first(3), facility) or "Observation"
    return f"{label}: {shown}{' ' + units if units else ''}"


def _concept_text(value: V2Value, facility: str) -> str:
    concept = _codeable(value, facility) or {}
    if "text" in concept:
        return str(concept["text"])
    codings = concept.get("coding", [])
    return str(codings[0].get("display") or codings[0]["code"]) if codings else ""


def _match(text: str, segment: str, field: int) -> re.Match[str]:
    match = _V2_DATETIME.fullmatch(text.strip())
    if match is None:
        raise V2Rejection(
            "AE",
            segment,
            field,
            f"{segment}-{field} is not an HL7 date/time (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]).",
            code=ERR_DATA_TYPE,
        )
    return match


def _date(text: str, segment: str, field: int) -> str:
    """Returns the FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) of a v2 DT/TS; raises AE when invalid."""
    match = _match(text, segment, field)
    year, month, day = match.group(1), match.group(2), match.group(3)
    try:
        datetime(int(year), int(month or 1), int(day or 1))
    except ValueError:
        raise V2Rejection(
            "AE", segment, field, f"{segment}-{field} is not a real calendar date.", code=ERR_DATA_TYPE
        ) from None
    return "-".join(p for p in (year, month, day) if p)


def _datetime(text: str, segment: str, field: int) -> str:
    """Returns the FHIR dateTime of a v2 TS/DTM; a time without an offset is taken as UTC."""
    date = _date(text, segment, field)
    match = _match(text, segment, field)
    hour, minute, second, fraction, offset = match.group(4, 5, 6, 7, 8)
    if hour is None:
        return date  # FHIR dateTime allows a date alone, without a zone
    try:
        moment = datetime.fromisoformat(f"{date}T{hour}:{minute or '00'}:{second or '00'}")
        sign, hh, mm = (offset[0], offset[1:3], offset[3:5]) if offset else ("+", "00", "00")
        zone = datetime.fromisoformat(f"2000-01-01T00:00:00{sign}{hh}:{mm}").tzinfo
    except ValueError:
        raise V2Rejection(
            "AE", segment, field, f"{segment}-{field} has a time of day or offset out of range.", code=ERR_DATA_TYPE
        ) from None
    stamp = moment.replace(tzinfo=zone).isoformat(timespec="seconds")
    return stamp[:19] + (fraction or "") + stamp[19:]


def _instant(text: str) -> str | None:
    """Returns MSH-7 as a FHIR instant (seconds and zone), or None when it is not precise to the second."""
    try:
        stamp = _datetime(text, "MSH", 7) if text else ""
    except V2Rejection:
        return None
    return stamp if len(stamp) > 10 else None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
