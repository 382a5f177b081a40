"""Pure transformations from a received referral to the FHIR resources the gateway stores.

A BaRS message carries its resources as bundle entries that point at each other with
`urn:uuid:` references; once unpacked those resolve to nothing on this server. The resources the
referral reaches (who referred, what supports it: `REFERENCED_TYPES`) are stored beside it, so
their references are rewritten to the stored copies (`relink`); a reference to anything else in
the message becomes a logical one (type, business identifier, display). The Patient,
ServiceRequest, Consent and Task records are shaped here; gateway/pipeline/referrals.py stores them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from profiles import systems

UKCORE_SERVICE_REQUEST = systems.UKCORE_PROFILE + "ServiceRequest"
UKCORE_PATIENT = systems.UKCORE_PROFILE + "Patient"
UKCORE_TASK = systems.UKCORE_PROFILE + "Task"
TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
# Resource types a referral reaches inside its message (from the ServiceRequest or the Patient, directly
# or through each other) that are stored in the referring tenant, readable and searchable there.
REFERENCED_TYPES = (
    "PractitionerRole",
    "Practitioner",
    "Organization",
    "QuestionnaireResponse",
    "Condition",
    "Encounter",
    "CarePlan",
    "HealthcareService",
    "Location",
    "Flag",
)
# Patient elements that cannot be kept once the Patient stands alone on this server.
_PATIENT_DROPPED = ("id", "meta", "link", "contained")
# Elements of a stored copy that belong to the sender's server, not this one.
_SENDER_BOOKKEEPING = ("id", "meta")

BundleIndex = dict[str, dict[str, Any]]
Links = dict[str, str]  # a reference used in the message -> "Type/id" of the stored copy


def nhs_identifier(nhs: str) -> dict[str, str]:
    return {"system": systems.NHS_NUMBER, "value": nhs}


def parse_instant(value: str | None) -> datetime | None:
    """Returns a FHIR dateTime as an aware UTC datetime (a value without a zone taken as UTC), or None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def with_profile(resource: dict[str, Any], profile: str) -> dict[str, Any]:
    """Returns the resource with `profile` added to meta.profile (once)."""
    meta = dict(resource.get("meta") or {})
    profiles = list(meta.get("profile") or [])
    if profile not in profiles:
        profiles.append(profile)
    meta["profile"] = profiles
    return {**resource, "meta": meta}


def message_index(bundle: dict[str, Any]) -> BundleIndex:
    """Returns the message's resources by fullUrl and by `Type/id`."""
    index: BundleIndex = {}
    for entry in bundle.get("entry", []):
        resource = entry.get("resource") or {}
        if entry.get("fullUrl"):
            index[entry["fullUrl"]] = resource
        if resource.get("id"):
            index[f"{resource.get('resourceType')}/{resource['id']}"] = resource
    return index


def local_reference(ref: Any, index: BundleIndex) -> Any:
    """Returns a reference that still means something once the message is unpacked: a reference
    into the message becomes the target's type, business identifier and display name."""
    if not isinstance(ref, dict) or "reference" not in ref:
        return ref
    target = index.get(ref["reference"])
    if target is None:
        return ref
    out: dict[str, Any] = {"type": target.get("resourceType")}
    identifiers = target.get("identifier") or []
    if identifiers:
        out["identifier"] = {k: identifiers[0][k] for k in ("system", "value") if k in identifiers[0]}
    elif ref.get("identifier"):
        out["identifier"] = ref["identifier"]
    display = ref.get("display") or _display_name(target)
    if display:
        out["display"] = display
    return out


def _display_name(resource: dict[str, Any]) -> str | None:
    if resource.get("name") and isinstance(resource["name"], str):
        return resource["name"]
    names = resource.get("name") or []
    if isinstance(names, list) and names and isinstance(names[0], dict):
        parts = [*names[0].get("prefix", []), *names[0].get("given", []), names[0].get("family", "")]
        return " ".join(p for p in parts if p).strip() or None
    return None


def referenced_resources(
    roots: list[dict[str, Any]], index: BundleIndex, new_id: Callable[[], str]
) -> tuple[list[tuple[str, dict[str, Any]]], Links]:
    """Returns the message resources of `REFERENCED_TYPES` that `roots` reach (directly or through each
    other), each once with the id it will be stored under, and the links from every reference used for
    them in the message to that stored id."""
    reached: list[tuple[str, dict[str, Any]]] = []
    by_object: dict[int, str] = {}
    pending = list(roots)
    while pending:
        for ref in _references_in(pending.pop(0)):
            target = index.get(ref)
            if target is None or target.get("resourceType") not in REFERENCED_TYPES or id(target) in by_object:
                continue
            rid = new_id()
            by_object[id(target)] = f"{target['resourceType']}/{rid}"
            reached.append((rid, target))
            pending.append(target)
    links = {key: by_object[id(target)] for key, target in index.items() if id(target) in by_object}
    return reached, links


def _references_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node["reference"]
        for key, value in node.items():
            if key != "contained":
                yield from _references_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references_in(item)


def relink(node: Any, index: BundleIndex, links: Links, patient_ref: dict[str, Any] | None) -> Any:
    """Returns `node` with every reference into the message made to mean something on this server: to a
    stored copy (`links`), to the stored Patient, or else logical (`local_reference`). A `urn:` reference
    that is none of these loses its `reference` and keeps its identifier and display; one left empty is
    dropped."""
    if isinstance(node, list):
        items = [relink(item, index, links, patient_ref) for item in node]
        return [item for item in items if item != {}]
    if not isinstance(node, dict):
        return node
    ref = node.get("reference")
    if isinstance(ref, str):
        target = index.get(ref)
        if ref in links:
            # The target's business identifier rides along, as a logical reference would carry it: who a
            # referral is addressed to (performer ODS code) is read from it.
            linked = {**node, "reference": links[ref]}
            identifiers = (target or {}).get("identifier") or []
            if "identifier" not in linked and identifiers and isinstance(identifiers[0], dict):
                linked["identifier"] = {k: identifiers[0][k] for k in ("system", "value") if k in identifiers[0]}
            return linked
        if target is not None and target.get("resourceType") == "Patient" and patient_ref is not None:
            return {**patient_ref, **({"display": node["display"]} if node.get("display") else {})}
        if target is not None:
            return local_reference(node, index)
        if ref.startswith("urn:"):
            return {k: v for k, v in node.items() if k != "reference"}
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        changed = relink(value, index, links, patient_ref)
        if changed != {} and changed != []:
            out[key] = changed
    return out


def referenced_record(
    resource: dict[str, Any], index: BundleIndex, links: Links, patient_ref: dict[str, Any]
) -> dict[str, Any]:
    """Returns the stored copy of a resource the referral reaches: the sender's id and meta left out,
    its references relinked."""
    body = {k: v for k, v in resource.items() if k not in _SENDER_BOOKKEEPING}
    return relink(body, index, links, patient_ref)


def patient_record(
    source: dict[str, Any] | None, nhs: str, index: BundleIndex | None = None, links: Links | None = None
) -> dict[str, Any]:
    """Returns the Patient to store: the sender's Patient (extensions such as the NHS number verification
    status and `generalPractitioner` kept, references relinked), or a minimal one."""
    patient: dict[str, Any] = {"resourceType": "Patient"}
    if source:
        kept = {k: v for k, v in source.items() if k not in _PATIENT_DROPPED}
        patient.update(relink(kept, index or {}, links or {}, None))
    identifiers = patient.get("identifier", [])
    others = [i for i in identifiers if i.get("system") != systems.NHS_NUMBER]
    # The sender's own NHS number entry when it is this number: it carries the verification status extension.
    sent = next((i for i in identifiers if i.get("system") == systems.NHS_NUMBER and i.get("value") == nhs), None)
    patient["identifier"] = [sent or nhs_identifier(nhs), *others]
    return with_profile(patient, UKCORE_PATIENT)


def service_request_record(
    sr: dict[str, Any], patient_ref: dict[str, Any], index: BundleIndex, links: Links | None = None
) -> dict[str, Any]:
    """Returns the ServiceRequest to store: subject = the stored Patient, references relinked."""
    body = {k: v for k, v in sr.items() if k not in ("id", "meta")}
    body = relink(body, index, links or {}, patient_ref)
    body["subject"] = patient_ref
    return with_profile(body, UKCORE_SERVICE_REQUEST)


def consent_record(consent: dict[str, Any], patient_ref: dict[str, Any], index: BundleIndex) -> dict[str, Any]:
    """Returns the Consent to store: patient = the stored Patient, provision.actor references made local
    (an `urn:uuid:` actor names nobody once the message is unpacked)."""
    body = {k: v for k, v in consent.items() if k not in ("id", "meta")}
    body["patient"] = patient_ref
    provision = body.get("provision")
    if isinstance(provision, dict) and provision.get("actor"):
        actors = [{**a, "reference": local_reference(a.get("reference"), index)} for a in provision["actor"]]
        body["provision"] = {**provision, "actor": actors}
    return body


def performer_org(sr: dict[str, Any]) -> str | None:
    """Returns the ODS code (or VCSE id) of the host the referral is addressed to, if any."""
    for performer in sr.get("performer") or []:
        ident = performer.get("identifier") or {}
        if ident.get("system") in (systems.ODS_CODE, systems.VCSE_ORG_ID) and ident.get("value"):
            return str(ident["value"])
    return None


def task_record(
    *,
    service_request: dict[str, Any],
    patient_ref: dict[str, Any],
    requester: str,
    recipient: str | None,
    referral_id: str,
    status: str,
    reason: str | None,
    business_status: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Returns the referral's FHIR Task (focus = the ServiceRequest, owner = the VCSE host)."""
    sr_ref = f"ServiceRequest/{service_request['id']}"
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": {"profile": [UKCORE_TASK]},
        "identifier": [{"system": systems.LOCAL_REFERRAL_ID, "value": referral_id}],
        "basedOn": [{"reference": sr_ref}],
        "status": status,
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE, "code": "fulfill"}]},
        "focus": {"reference": sr_ref},
        "for": patient_ref,
        "authoredOn": service_request.get("authoredOn"),
        "lastModified": now.isoformat(timespec="seconds"),
        "requester": {"identifier": {"system": systems.ODS_CODE, "value": requester}},
    }
    if reason:
        task["statusReason"] = {"text": reason}
    if business_status:
        task["businessStatus"] = {"text": business_status}
    if recipient:
        task["owner"] = {"identifier": {"system": systems.ODS_CODE, "value": recipient}}
    return task


def patient_nhs_of(resource: dict[str, Any]) -> str | None:
    """Returns the NHS number a stored resource is about (its subject, for or patient; a Patient's own)."""
    for element in ("subject", "for", "patient"):
        ident = (resource.get(element) or {}).get("identifier") or {}
        if ident.get("system") == systems.NHS_NUMBER:
            return ident.get("value")
    if resource.get("resourceType") == "Patient":
        for ident in resource.get("identifier") or []:
            if ident.get("system") == systems.NHS_NUMBER:
                return ident.get("value")
    return None
