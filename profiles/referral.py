"""The social prescribing referral profile, and reading the BaRS-style message that carries it.

Runs on the raw dict after `structure.check_structure` passed (the model accepted it), and
reports every failure at once (422): a sender fixes a referral in one round trip.

A valid inbound social prescribing referral (ServiceRequest, UK Core based):
- status `active` for a new referral; `revoked` or `entered-in-error` only in a cancellation
  (BaRS). Any value outside the R4 required binding is named as such.
- intent `plan` (fixed by BaRS) or `order` (plain FHIR GP systems).
- code: a coding from the social prescribing referral value set (data/valueset-sp-referral.json,
  SNOMED CT 871731000000106 "Referral to social prescribing service").
- subject: the patient, with an NHS number (Modulus 11) on subject.identifier or on the
  referenced Patient; where both are given they must agree.
- requester (reference or identifier) and authoredOn: required for a new referral.
- performer: optional; identifiers are ODS codes or our VCSE organisation ids.
- category: BaRS category code `referral` or `validation`; the BaRS use-case coding beside
  it is accepted as sent unless a list of use cases is configured (none exists for social
  prescribing yet).
- meta.profile: UK Core ServiceRequest (or the BaRS referral profile built on it); any
  other profile is a warning, not an error.

Issue codes: required (missing), code-invalid (outside a binding or value set), value (bad
identifier), business-rule (allowed by FHIR, not by this profile), invalid (empty/JSON
form), not-supported (a message this gateway does not take), processing (warning).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from profiles.consent_profile import consent_rules
from profiles.data import load
from profiles.identifiers import (
    as_dict,
    as_list,
    is_ods_system,
    nhs_number_issue,
    nhs_numbers,
    ods_identifier_issues,
    ods_problem,
)
from profiles.jsonchecks import empty_values, json_types
from profiles.nhs_number import is_valid
from profiles.outcomes import Issue
from profiles.systems import (
    BARS_MESSAGE_EVENTS,
    BARS_MESSAGE_REASON,
    BARS_SR_CATEGORY,
    NHS_NUMBER,
    ODS_CODE,
    VCSE_ORG_ID,
)

_SR = load("servicerequest.json")
_EVENTS = load("message-events.json")
_VALUESET = load("valueset-sp-referral.json")

SP_REFERRAL_CODES: frozenset[tuple[str, str]] = frozenset(
    (include["system"], concept["code"])
    for include in _VALUESET["compose"]["include"]
    for concept in include["concept"]
)
_SP_CODE_TEXT = ", ".join(
    f'{concept["code"]} "{concept["display"]}" ({include["system"]})'
    for include in _VALUESET["compose"]["include"]
    for concept in include["concept"]
)
_NOT_SP = "not a social prescribing referral"
_HEADER = "Bundle.entry[0].resource"


@dataclass
class ReferralMessage:
    """A referral message read from a BaRS-style message Bundle (all resources as raw dicts).

    `warnings` holds issues of severity warning found in a message that is otherwise valid.
    """

    kind: Literal["new", "cancel"]
    header: dict[str, Any]
    service_request: dict[str, Any]
    service_request_full_url: str | None
    patient: dict[str, Any] | None
    organizations: list[dict[str, Any]]
    practitioners: list[dict[str, Any]]
    consents: list[dict[str, Any]]
    questionnaire_responses: list[dict[str, Any]]
    flags: list[dict[str, Any]]
    sender_ods: str | None
    nhs_number: str
    warnings: list[Issue] = field(default_factory=list)


def check_service_request(
    sr: dict[str, Any],
    path: str = "ServiceRequest",
    patient: dict[str, Any] | None = None,
    *,
    for_cancel: bool = False,
    patient_path: str = "Patient",
    use_cases: Collection[str] | None = None,
) -> list[Issue]:
    """Returns every way `sr` fails the social prescribing referral profile ([] when it passes).

    `patient` is the Patient that subject references (from the same message), if any;
    `patient_path` names it in issues. `for_cancel` checks it as the ServiceRequest of a
    cancellation (status revoked / entered-in-error; requester and authoredOn may be left
    out, as BaRS cancellations do). `use_cases` limits the BaRS use-case category codes
    (default: data/servicerequest.json, where null accepts any).
    """
    issues = _referral_rules(sr, path, patient, for_cancel, patient_path, use_cases)
    return issues + empty_values(sr, path) + json_types(sr, path)


def _referral_rules(
    sr: dict[str, Any],
    path: str,
    patient: dict[str, Any] | None,
    for_cancel: bool,
    patient_path: str,
    use_cases: Collection[str] | None,
) -> list[Issue]:
    """The profile rules without the JSON form checks (read_message runs those once over the Bundle)."""
    return [
        *_profiles(sr, path),
        *_status_intent_priority(sr, path, for_cancel),
        *_code(sr, path, for_cancel),
        *_category(sr, path, _SR["bars_use_cases"] if use_cases is None else use_cases),
        *_subject(sr, path, patient, patient_path),
        *_requester_and_date(sr, path, for_cancel),
        *_performers(sr, path),
    ]


def read_message(
    bundle: dict[str, Any], *, use_cases: Collection[str] | None = None
) -> tuple[ReferralMessage | None, list[Issue]]:
    """Reads a referral message Bundle: (message, []) when valid, (None or partial message, issues) when not.

    A valid message's warnings are in `message.warnings`. A partial message (returned when
    the header and the focus ServiceRequest could be found) lets the caller say which
    referral a refused cancellation meant; never act on it as a valid referral. A message
    with another event (booking-request, servicerequest-response, ...) is not read further:
    its one issue says the event is not supported.
    """
    issues: list[Issue] = []
    if bundle.get("type") != "message":
        issues.append(
            Issue(
                "code-invalid",
                "Bundle.type: a referral must be sent as a message Bundle (type 'message').",
                "Bundle.type",
            )
        )
    entries = [as_dict(e) for e in as_list(bundle.get("entry"))]
    header = as_dict(entries[0].get("resource")) if entries else {}
    if header.get("resourceType") != "MessageHeader":
        issues.append(
            Issue(
                "invalid",
                "Bundle.entry[0]: the first entry of a message Bundle must be its MessageHeader.",
                "Bundle.entry[0]",
            )
        )
        return None, issues
    event_issue = _event(header)
    if event_issue:
        return None, [*issues, event_issue]

    index, duplicates = _index(entries)
    issues += duplicates
    reason, reason_issues = _reason(header)
    issues += reason_issues
    focus = _focus(header, entries, index)
    message = None
    if isinstance(focus, Issue):
        issues.append(focus)
    else:
        message = _read_referral(header, entries, index, focus, reason, issues, use_cases)
    for i, entry in enumerate(entries):
        resource = as_dict(entry.get("resource"))
        if resource.get("resourceType") == "Consent":
            issues += consent_rules(resource, f"Bundle.entry[{i}].resource")
    issues += empty_values(bundle, "Bundle")
    issues += json_types(bundle, "Bundle")

    if any(i.severity in ("error", "fatal") for i in issues):
        return message, issues
    if message is not None:
        message.warnings = issues
    return message, []


def _read_referral(
    header: dict[str, Any],
    entries: list[dict[str, Any]],
    index: dict[str, int],
    sr_at: int,
    reason: str,
    issues: list[Issue],
    use_cases: Collection[str] | None,
) -> ReferralMessage | None:
    """Checks the focus ServiceRequest with its Patient (adding to `issues`); returns the message read."""
    sr = entries[sr_at]["resource"]
    sr_path = f"Bundle.entry[{sr_at}].resource"
    kind: Literal["new", "cancel"] | None = "new"
    if reason == "cancel":
        if sr.get("status") in _SR["status"]["allowed_cancel"]:
            kind = "cancel"
        else:
            kind = None
            issues.append(
                Issue(
                    "not-supported",
                    f"{_HEADER}.reason: a referral can be replaced only by cancelling it (ServiceRequest status "
                    "revoked or entered-in-error) and sending a new one; changing a referral in place is not "
                    "supported.",
                    f"{_HEADER}.reason",
                )
            )
    patient_at, subject_issues = _patient(sr, sr_path, entries, index)
    issues += subject_issues
    patient = entries[patient_at]["resource"] if patient_at is not None else None
    patient_path = f"Bundle.entry[{patient_at}].resource" if patient_at is not None else "Patient"
    issues += _referral_rules(sr, sr_path, patient, kind == "cancel", patient_path, use_cases)
    sender_ods, sender_issues = _sender_ods(header, entries, index)
    issues += sender_issues
    if kind is None:
        return None
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        resource = as_dict(entry.get("resource"))
        by_type.setdefault(resource.get("resourceType", ""), []).append(resource)
    return ReferralMessage(
        kind=kind,
        header=header,
        service_request=sr,
        service_request_full_url=entries[sr_at].get("fullUrl"),
        patient=patient,
        organizations=by_type.get("Organization", []),
        practitioners=by_type.get("Practitioner", []) + by_type.get("PractitionerRole", []),
        consents=by_type.get("Consent", []),
        questionnaire_responses=by_type.get("QuestionnaireResponse", []),
        flags=by_type.get("Flag", []),
        sender_ods=sender_ods,
        nhs_number=nhs_number_of(sr, patient) or "",
    )


CANCELLED_STATUSES = ("revoked", "entered-in-error")
_UNCHANGEABLE_IGNORED = ("status", "meta", "id", "text")


def check_client_update(current: dict[str, Any], proposed: dict[str, Any]) -> list[Issue]:
    """Returns why a referrer's PUT of a stored referral is refused: after submission a referral may only be
    cancelled (status revoked or entered-in-error, as a BaRS cancellation does); nothing else may change."""
    before = {k: v for k, v in current.items() if k not in _UNCHANGEABLE_IGNORED}
    after = {k: v for k, v in proposed.items() if k not in _UNCHANGEABLE_IGNORED}
    changed = sorted(set(before) ^ set(after) | {k for k in before if k in after and before[k] != after[k]})
    issues = [
        Issue(
            "business-rule",
            f"Only ServiceRequest.status may change after submission; {k} differs",
            f"ServiceRequest.{k}",
        )
        for k in changed
    ]
    if proposed.get("status") not in CANCELLED_STATUSES:
        issues.append(
            Issue(
                "business-rule",
                "A referral can only be cancelled here: set status to revoked or entered-in-error",
                "ServiceRequest.status",
            )
        )
    return issues


def nhs_number_of(sr: dict[str, Any], patient: dict[str, Any] | None = None) -> str | None:
    """Returns the patient's valid NHS number from subject.identifier or else the Patient, or None."""
    ident = as_dict(as_dict(sr.get("subject")).get("identifier"))
    if ident.get("system") == NHS_NUMBER and is_valid(ident.get("value")):
        return ident["value"]
    for _, value in nhs_numbers(patient):
        if is_valid(value):
            return value
    return None


# --- ServiceRequest rules -------------------------------------------------------------------


def _profiles(sr: dict[str, Any], path: str) -> list[Issue]:
    issues = []
    for i, url in enumerate(as_list(as_dict(sr.get("meta")).get("profile"))):
        if isinstance(url, str) and url.split("|")[0] not in _SR["known_profiles"]:
            where = f"{path}.meta.profile[{i}]"
            issues.append(
                Issue(
                    "processing",
                    f"{where}: profile {url} is unknown here and was not checked; "
                    f"the referral was checked against the gateway's social prescribing profile "
                    f"(based on UK Core ServiceRequest).",
                    where,
                    severity="warning",
                )
            )
    return issues


def _status_intent_priority(sr: dict[str, Any], path: str, for_cancel: bool) -> list[Issue]:
    issues: list[Issue] = []
    status_allowed = _SR["status"]["allowed_cancel" if for_cancel else "allowed_new"]
    what = "a cancellation" if for_cancel else "a new referral"
    for name, allowed, required in (
        ("status", status_allowed, True),
        ("intent", _SR["intent"]["allowed"], True),
        ("priority", None, False),
    ):
        value = sr.get(name)
        where = f"{path}.{name}"
        binding = _SR[name]["binding"]
        if value is None:
            if required:
                issues.append(Issue("required", f"{where}: {name} is required.", where))
        elif value not in binding:
            issues.append(
                Issue(
                    "code-invalid",
                    f"{where}: not a valid ServiceRequest {name}; FHIR R4 allows only {', '.join(binding)}.",
                    where,
                )
            )
        elif allowed is not None and value not in allowed:
            issues.append(
                Issue(
                    "business-rule",
                    f"{where}: {what} must have {name} {' or '.join(allowed)}, not {value}.",
                    where,
                )
            )
    if sr.get("doNotPerform") is True:
        where = f"{path}.doNotPerform"
        issues.append(Issue("business-rule", f"{where}: a referral cannot be a request not to refer.", where))
    return issues


def _code(sr: dict[str, Any], path: str, for_cancel: bool) -> list[Issue]:
    where = f"{path}.code"
    code = sr.get("code")
    if code is None:
        if for_cancel:
            return []
        return [
            Issue(
                "required",
                f"{where}: the code is missing, so this is {_NOT_SP}; expected {_SP_CODE_TEXT}.",
                where,
            )
        ]
    codings = [c for c in as_list(as_dict(code).get("coding")) if isinstance(c, dict)]
    if any((c.get("system"), c.get("code")) in SP_REFERRAL_CODES for c in codings):
        return []
    sp_codes = {code for _, code in SP_REFERRAL_CODES}
    for i, coding in enumerate(as_list(as_dict(code).get("coding"))):
        if isinstance(coding, dict) and coding.get("code") in sp_codes:
            system_path = f"{where}.coding[{i}].system"
            wanted = next(s for s, c in SP_REFERRAL_CODES if c == coding.get("code"))
            return [
                Issue(
                    "code-invalid",
                    f"{system_path}: {_NOT_SP}: code {coding.get('code')} is given with "
                    f"system {coding.get('system')!r}; it must be {wanted}.",
                    system_path,
                )
            ]
    return [
        Issue(
            "code-invalid",
            f"{where}: {_NOT_SP}: the code has no coding from the social prescribing "
            f"referral value set ({_SP_CODE_TEXT}).",
            where,
        )
    ]


def _category(sr: dict[str, Any], path: str, use_cases: Collection[str] | None) -> list[Issue]:
    issues = []
    use_case_system = _SR["bars_use_case_system"]
    for i, concept in enumerate(as_list(sr.get("category"))):
        for j, coding in enumerate(as_list(as_dict(concept).get("coding"))):
            coding = as_dict(coding)
            system, code = coding.get("system"), coding.get("code")
            where = f"{path}.category[{i}].coding[{j}].code"
            if system == BARS_SR_CATEGORY and code not in _SR["bars_category_codes"]:
                issues.append(
                    Issue(
                        "code-invalid",
                        f"{where}: the BaRS ServiceRequest category must be {' or '.join(_SR['bars_category_codes'])}.",
                        where,
                    )
                )
            elif system == use_case_system and use_cases is not None and code not in use_cases:
                issues.append(
                    Issue(
                        "code-invalid",
                        f"{where}: BaRS use case {code} is not one this gateway "
                        f"accepts ({', '.join(sorted(use_cases)) or 'none configured'}).",
                        where,
                    )
                )
    return issues


def _subject(sr: dict[str, Any], path: str, patient: dict[str, Any] | None, patient_path: str) -> list[Issue]:
    where = f"{path}.subject"
    subject = sr.get("subject")
    if not isinstance(subject, dict):
        return [Issue("required", f"{where}: the referral must name the patient (subject).", where)]
    issues: list[Issue] = []
    ref = subject.get("reference")
    ref_type = _reference_type(ref)
    if ref_type not in (None, "Patient") or subject.get("type") not in (None, "Patient"):
        issues.append(Issue("invalid", f"{where}: the subject of a referral must be a Patient.", where))

    ident = as_dict(subject.get("identifier"))
    subject_nhs = ident.get("value") if ident.get("system") == NHS_NUMBER else None
    if subject_nhs is not None:
        problem = nhs_number_issue(subject_nhs, f"{where}.identifier.value")
        if problem:
            issues.append(problem)
    patient_values = nhs_numbers(patient)
    for i, value in patient_values:
        if value != subject_nhs:
            problem = nhs_number_issue(value, f"{patient_path}.identifier[{i}].value", "The Patient's NHS number")
            if problem:
                issues.append(problem)
    distinct = {v for _, v in patient_values}
    if len(distinct) > 1:
        issues.append(
            Issue(
                "business-rule",
                f"{patient_path}.identifier: the Patient has more than one different NHS number.",
                f"{patient_path}.identifier",
            )
        )
    if subject_nhs is not None and distinct and subject_nhs not in distinct:
        issues.append(
            Issue(
                "business-rule",
                f"{where}.identifier.value: the NHS number in subject.identifier "
                f"does not match the NHS number of the Patient ({patient_path}).",
                f"{where}.identifier.value",
            )
        )
    if subject_nhs is None and not distinct:
        missing = f"{patient_path}.identifier" if patient is not None else f"{where}.identifier"
        issues.append(
            Issue(
                "required",
                f"{missing}: the referral does not give the patient's NHS number "
                f"(an identifier with system {NHS_NUMBER}, on subject.identifier or on the "
                "referenced Patient).",
                missing,
            )
        )
    return issues


def _requester_and_date(sr: dict[str, Any], path: str, for_cancel: bool) -> list[Issue]:
    issues = []
    where = f"{path}.requester"
    requester = sr.get("requester")
    if not isinstance(requester, dict) or not (requester.get("reference") or requester.get("identifier")):
        if not (for_cancel and requester is None):
            issues.append(
                Issue(
                    "required",
                    f"{where}: the referral must say who made it (requester with a reference or an identifier).",
                    where,
                )
            )
    else:
        issues += ods_identifier_issues(as_dict(requester.get("identifier")), f"{where}.identifier")
    if sr.get("authoredOn") is None and not for_cancel:
        issues.append(
            Issue(
                "required",
                f"{path}.authoredOn: the date the referral was made is required.",
                f"{path}.authoredOn",
            )
        )
    return issues


def _performers(sr: dict[str, Any], path: str) -> list[Issue]:
    issues = []
    for i, performer in enumerate(as_list(sr.get("performer"))):
        ident = as_dict(as_dict(performer).get("identifier"))
        if not ident:
            continue
        where = f"{path}.performer[{i}].identifier"
        if not (is_ods_system(ident.get("system")) or ident.get("system") == VCSE_ORG_ID):
            issues.append(
                Issue(
                    "code-invalid",
                    f"{where}.system: a performer is named by ODS code ({ODS_CODE}) "
                    f"or VCSE organisation id ({VCSE_ORG_ID}).",
                    f"{where}.system",
                )
            )
        elif ident.get("system") == VCSE_ORG_ID and ident.get("value") is None:
            issues.append(Issue("required", f"{where}.value: the performer identifier has no value.", f"{where}.value"))
        issues += ods_identifier_issues(ident, where)
    return issues


def _reference_type(ref: object) -> str | None:
    """Returns the resource type a literal reference names ("Patient/1", ".../fhir/Patient/1"), or None."""
    if not isinstance(ref, str) or ref.startswith(("urn:", "#")):
        return None
    parts = ref.split("/_history/")[0].rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else None


# --- message rules --------------------------------------------------------------------------


def _event(header: dict[str, Any]) -> Issue | None:
    event = as_dict(header.get("eventCoding"))
    if event.get("system") == BARS_MESSAGE_EVENTS and event.get("code") in _EVENTS["supported_events"]:
        return None
    where = f"{_HEADER}.eventUri" if "eventUri" in header else f"{_HEADER}.eventCoding"
    said = f"{event.get('system')}#{event.get('code')}" if event else "an event URI"
    return Issue(
        "not-supported",
        f"{where}: this gateway takes only referral messages (event "
        f"{BARS_MESSAGE_EVENTS}#{' or '.join(_EVENTS['supported_events'])}), not {said}.",
        where,
    )


def _reason(header: dict[str, Any]) -> tuple[str, list[Issue]]:
    """Returns ("new" | "cancel", issues) from MessageHeader.reason; no reason means a new referral."""
    reason = header.get("reason")
    if reason is None:
        return "new", []
    where = f"{_HEADER}.reason"
    for coding in as_list(as_dict(reason).get("coding")):
        coding = as_dict(coding)
        if coding.get("system") == BARS_MESSAGE_REASON:
            kind = _EVENTS["reasons"].get(coding.get("code"))
            if kind:
                return kind, []
            return "new", [
                Issue(
                    "code-invalid",
                    f"{where}: message reason {coding.get('code')!r} is not one of {', '.join(_EVENTS['reasons'])}.",
                    where,
                )
            ]
    return "new", [
        Issue(
            "code-invalid",
            f"{where}: the reason must have a coding from {BARS_MESSAGE_REASON} "
            f"({', '.join(_EVENTS['reasons'])}), or be left out for a new referral.",
            where,
        )
    ]


def _index(entries: list[dict[str, Any]]) -> tuple[dict[str, int], list[Issue]]:
    """Returns {fullUrl or Type/id: entry index} and issues for duplicate fullUrls (R4 bdl-7)."""
    index: dict[str, int] = {}
    issues: list[Issue] = []
    full_urls: set[str] = set()
    for i, entry in enumerate(entries):
        full_url = entry.get("fullUrl")
        resource = as_dict(entry.get("resource"))
        if isinstance(full_url, str):
            if full_url in full_urls:
                where = f"Bundle.entry[{i}].fullUrl"
                issues.append(Issue("invalid", f"{where}: another entry has the same fullUrl.", where))
            full_urls.add(full_url)
            index.setdefault(full_url, i)
            if full_url.startswith(("http://", "https://")):
                parts = full_url.rstrip("/").split("/")
                index.setdefault("/".join(parts[-2:]), i)
        rt, rid = resource.get("resourceType"), resource.get("id")
        if isinstance(rt, str) and isinstance(rid, str):
            index.setdefault(f"{rt}/{rid}", i)
    return index, issues


def _resolve(ref: object, index: dict[str, int]) -> int | None:
    """Returns the entry index a reference resolves to within the Bundle, or None."""
    if not isinstance(ref, str):
        return None
    ref = ref.split("/_history/")[0]
    if ref in index:
        return index[ref]
    if ref.startswith(("http://", "https://")):
        return index.get("/".join(ref.rstrip("/").split("/")[-2:]))
    return None


def _focus(header: dict[str, Any], entries: list[dict[str, Any]], index: dict[str, int]) -> int | Issue:
    """Returns the entry index of the one ServiceRequest the header's focus names, or an issue."""
    where = f"{_HEADER}.focus"
    focus = as_list(header.get("focus"))
    if not focus:
        return Issue("required", f"{where}: the MessageHeader must name the referral (focus).", where)
    found = []
    for i, ref in enumerate(focus):
        at = _resolve(as_dict(ref).get("reference"), index)
        if at is None:
            return Issue(
                "invalid",
                f"{where}[{i}]: the focus does not resolve to an entry in the Bundle.",
                f"{where}[{i}]",
            )
        if as_dict(entries[at].get("resource")).get("resourceType") == "ServiceRequest":
            found.append(at)
    if len(found) != 1:
        said = "names no ServiceRequest" if not found else "names more than one ServiceRequest"
        return Issue("invalid", f"{where}: the focus {said}; a referral message carries exactly one.", where)
    return found[0]


def _patient(
    sr: dict[str, Any], sr_path: str, entries: list[dict[str, Any]], index: dict[str, int]
) -> tuple[int | None, list[Issue]]:
    """Returns the entry index of the referral's Patient and issues with the subject reference."""
    subject = as_dict(sr.get("subject"))
    ref = subject.get("reference")
    where = f"{sr_path}.subject.reference"
    if ref is not None:
        at = _resolve(ref, index)
        if at is None:
            if as_dict(subject.get("identifier")).get("system") == NHS_NUMBER:
                return None, []
            return None, [Issue("invalid", f"{where}: the subject does not resolve to a Patient in the Bundle.", where)]
        if as_dict(entries[at].get("resource")).get("resourceType") != "Patient":
            return None, [Issue("invalid", f"{where}: the subject must be a Patient.", where)]
        return at, []
    patients = [i for i, e in enumerate(entries) if as_dict(e.get("resource")).get("resourceType") == "Patient"]
    return (patients[0] if len(patients) == 1 else None), []


def _sender_ods(
    header: dict[str, Any], entries: list[dict[str, Any]], index: dict[str, int]
) -> tuple[str | None, list[Issue]]:
    """Returns the sender's ODS code: MessageHeader.sender's Organization identifier, or source.endpoint."""
    sender = as_dict(header.get("sender"))
    at = _resolve(sender.get("reference"), index)
    candidates: list[tuple[dict[str, Any], str]] = []
    if at is not None:
        resource = as_dict(entries[at].get("resource"))
        candidates += [
            (as_dict(ident), f"Bundle.entry[{at}].resource.identifier[{i}]")
            for i, ident in enumerate(as_list(resource.get("identifier")))
        ]
    candidates.append((as_dict(sender.get("identifier")), f"{_HEADER}.sender.identifier"))
    for ident, where in candidates:
        if is_ods_system(ident.get("system")) and ident.get("value") is not None:
            problems = ods_identifier_issues(ident, where)
            return (None, problems) if problems else (ident["value"], [])
    endpoint = as_dict(header.get("source")).get("endpoint")
    system, _, value = endpoint.partition("|") if isinstance(endpoint, str) else ("", "", "")
    if is_ods_system(system):
        reason = ods_problem(value)
        if reason:
            where = f"{_HEADER}.source.endpoint"
            return None, [Issue("value", f"{where}: the sender's ODS code is not valid. {reason}", where)]
        return value, []
    return None, []
