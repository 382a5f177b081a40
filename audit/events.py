"""Pure builders of FHIR R4 AuditEvent resources (as dicts), after IHE Basic Audit Log Patterns.

One `AuditContext` (who called, from where, with which trace ids) goes in, one AuditEvent
dict comes out; nothing here reads a clock, a database or a request. The shapes follow
BALP (IHE ITI Basic Audit Log Patterns) as mapped in docs/design.md "Audit patterns":

| builder                  | BALP pattern                 | type / subtype / action                              |
| ------------------------ | ---------------------------- | ---------------------------------------------------- |
| `rest_event`             | Create/Read/Query/Update/... | audit-event-type#rest / restful-interaction#<i> / CRUDE |
| `disclosure_event`       | PrivacyDisclosure (source)   | DCM 110106 Export / iso-21089-lifecycle#disclose / R |
| `consent_decision_event` | AuthZconsent                 | DCM 110113 Security Alert / AuthZsubType#AuthZ-Consent / E |
| `auth_event`             | (token endpoint)             | DCM 110114 User Authentication / DCM 110122 Login / E |
| `system_event`           | (worker and CLI actions)     | DCM 110100 Application Activity / local subtype / E  |

`index_fields` derives the search columns from a built (or stored) event, so that the
storage layer never takes them from a caller and `verify` can re-derive them.

Organisations are given as an ODS code, or as a FHIR token `system|value` for one without
an ODS code (a VCSE organisation); index fields give them back exactly as given.
Local codes (ours, under https://sp-gateway.dev/fhir) are used only where no published
code exists: the system-event subtypes, the correlation-id and routing-header entity
types, client roles and client ids, and packet ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from profiles.systems import LOCAL_BASE, NHS_NUMBER, ODS_CODE, V3_ACT_REASON, V3_PARTICIPATION_TYPE

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ISO_LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
BALP_AUTHZ_SUBTYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/AuthZsubType"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
AUDIT_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SECURITY_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
V3_ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
EXTRA_SECURITY_ROLE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"

LOCAL_AUDIT_SUBTYPE = f"{LOCAL_BASE}/CodeSystem/audit-subtype"
LOCAL_ENTITY_TYPE = f"{LOCAL_BASE}/CodeSystem/audit-entity-type"
LOCAL_CLIENT_ROLE = f"{LOCAL_BASE}/CodeSystem/client-role"
LOCAL_CLIENT_ID = f"{LOCAL_BASE}/Id/client-id"
LOCAL_PACKET_ID = f"{LOCAL_BASE}/Id/packet-id"

GATEWAY_NAME = "sp-gateway"
DISCLOSED_FIELD = "disclosed-field"  # entity.detail.type for each field of a disclosed packet
DATA_CATEGORY = "data-category"  # entity.detail.type for each category a consent decision covered

OUTCOMES = frozenset({0, 4, 8, 12})  # R4 audit-event-outcome: success, minor, serious, major failure

# R4 restful-interaction codes and the BALP action of each (Query and operations are E).
ACTION_BY_INTERACTION = {
    "read": "R",
    "vread": "R",
    "history": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "capabilities": "R",
    "search": "E",
    "search-type": "E",
    "search-system": "E",
    "search-compartment": "E",
    "create": "C",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "transaction": "E",
    "batch": "E",
    "operation": "E",
}
# Where data flows to the client, BALP Read/Query make the client the Destination (DCM 110152)
# and the server the Source (110153); for Create/Update/Delete the roles are the other way.
_CLIENT_RECEIVES = frozenset(
    {"read", "vread", "history", "history-instance", "history-type", "history-system", "capabilities"}
    | {"search", "search-type", "search-system", "search-compartment"}
)
_SEARCHES = frozenset({"search", "search-type", "search-system", "search-compartment"})

_RESOURCE_TYPE_RE = re.compile(r"\A[A-Z][A-Za-z]{1,63}\Z")
_FHIR_ID_RE = re.compile(r"\A[A-Za-z0-9\-.]{1,64}\Z")
_TOKEN_RE = re.compile(r"\A[a-z][a-z0-9-]{0,62}\Z")
_NHS_NUMBER_RE = re.compile(r"\A[0-9]{10}\Z")  # format only; the Modulus 11 check belongs to profiles/


@dataclass(frozen=True)
class AuditContext:
    """Who is acting and how the request can be traced; every field is optional (a worker has none)."""

    client_id: str | None = None
    organisation: str | None = None  # ODS code, or `system|value`
    role: str | None = None  # the client's role: referrer, vcse-host, ig-officer, admin
    user: str | None = None  # the end user, when the client names one
    request_id: str | None = None  # X-Request-ID
    correlation_id: str | None = None  # X-Correlation-ID
    source_ip: str | None = None
    routing_headers: dict[str, str] = field(default_factory=dict)  # decoded NHSD-* headers
    # A client id that was claimed but not proved (a refused token request's `sub`): recorded as a claim,
    # never as the client, so a refusal cannot be pinned on a client that did not make it.
    claimed_client_id: str | None = None


# --- builders ----------------------------------------------------------------------------------


def rest_event(
    ctx: AuditContext,
    *,
    interaction: str,
    resource_type: str,
    resource_id: str | None,
    outcome: int,
    patient_nhs: str | None,
    description: str | None,
    recorded: datetime,
) -> dict[str, Any]:
    """Returns a BALP RESTful AuditEvent (Create, Read, Query, Update, Delete, operations).

    Raises ValueError for an interaction outside R4 restful-interaction, a malformed
    resource type or id, an outcome outside 0/4/8/12, or a naive `recorded`.
    """
    action = ACTION_BY_INTERACTION.get(interaction)
    if action is None:
        raise ValueError(f"{interaction!r} is not an R4 restful-interaction code")
    if not _RESOURCE_TYPE_RE.match(resource_type):
        raise ValueError(f"{resource_type!r} is not a FHIR resource type name")
    if resource_id is not None and not _FHIR_ID_RE.match(resource_id):
        raise ValueError("resource id is not a FHIR id")
    receives = interaction in _CLIENT_RECEIVES
    client_type = _concept(DCM, "110152", "Destination Role ID") if receives else _source_role()
    server_type = _source_role() if receives else _concept(DCM, "110152", "Destination Role ID")
    agents = [
        *_caller_agents(ctx, client_type=client_type, user_type="IRCP" if receives else "AUT"),
        {"type": server_type, "who": _gateway_ref(), "requestor": False},
    ]
    entities: list[dict[str, Any]] = []
    if patient_nhs:
        entities.append(_patient_entity(patient_nhs))
    if resource_id is not None:
        entities.append(_resource_entity(f"{resource_type}/{resource_id}"))
    else:
        # No id (a search, or a create that never got one): record which type was touched.
        role = ("24", "Query") if interaction in _SEARCHES else ("4", "Domain Resource")
        entities.append(
            {
                "type": _coding(AUDIT_ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, *role),
                "what": {"type": resource_type},
            }
        )
    entities.extend(_trace_entities(ctx))
    return _event(
        type_=_coding(AUDIT_EVENT_TYPE, "rest", "Restful Operation"),
        subtype=_coding(RESTFUL_INTERACTION, interaction, interaction),
        action=action,
        outcome=outcome,
        outcome_desc=description,
        recorded=recorded,
        agents=agents,
        entities=entities,
    )


def disclosure_event(
    ctx: AuditContext,
    *,
    recipient_org: str,
    patient_nhs: str,
    referral_ref: str,
    packet_id: str,
    fields: list[str],
    consent_ref: str | None,
    outcome: int,
    recorded: datetime,
    kind: str = "referral-packet",
) -> dict[str, Any]:
    """Returns a BALP PrivacyDisclosure (source side) event: which fields of whose data went to whom.

    `fields` is the exact list of packet field paths sent; each becomes an
    `entity.detail` ("disclosed-field"). Raises ValueError for empty identifiers, an empty
    field name, a `kind` that is not a lower-case token, or a bad outcome / naive time.
    """
    _require(recipient_org=recipient_org, patient_nhs=patient_nhs, referral_ref=referral_ref, packet_id=packet_id)
    if not _TOKEN_RE.match(kind):
        raise ValueError(f"packet kind {kind!r} must be a lower-case token")
    if not all(isinstance(f, str) and f for f in fields):
        raise ValueError("every disclosed field is a non-empty field path")
    agents = [
        # BALP PrivacyDisclosure.Source: the source agent is the audit source itself.
        {"type": _source_role(), "who": _gateway_ref(), "requestor": False},
        _recipient_agent(recipient_org),
        *_caller_agents(ctx, client_type=_application_role(), user_type="AUT"),
    ]
    packet: dict[str, Any] = {
        "type": _coding(LOCAL_ENTITY_TYPE, kind, kind),
        "role": _coding(OBJECT_ROLE, "3", "Report"),
        "what": {"identifier": {"system": LOCAL_PACKET_ID, "value": packet_id}},
    }
    if fields:
        packet["detail"] = [{"type": DISCLOSED_FIELD, "valueString": f} for f in fields]
    entities = [_patient_entity(patient_nhs), _resource_entity(referral_ref), packet]
    if consent_ref:
        entities.append(_consent_entity(consent_ref, []))
    entities.extend(_trace_entities(ctx))
    return _event(
        type_=_coding(DCM, "110106", "Export"),
        subtype=_coding(ISO_LIFECYCLE, "disclose", "Disclose Record Lifecycle Event"),
        action="R",
        outcome=outcome,
        outcome_desc=None,
        recorded=recorded,
        agents=agents,
        entities=entities,
        purpose=_treatment(),
    )


def consent_decision_event(
    ctx: AuditContext,
    *,
    recipient_org: str,
    patient_nhs: str,
    decision: str,
    consent_ref: str | None,
    categories: list[str],
    reason: str,
    recorded: datetime,
) -> dict[str, Any]:
    """Returns a BALP AuthZconsent event: the gateway's permit/deny before a disclosure.

    Outcome is 0 for permit and 4 for deny (R4 audit-event-outcome: 4 is the failure
    "often equivalent to an HTTP 400", which a refusal is; it is not a server fault), with
    `reason` as outcomeDesc. The Consent entity is always present: with no `consent_ref`
    it says that no Consent was on record, the commonest reason for a deny.
    Raises ValueError for a decision other than permit/deny or empty values.
    """
    if decision not in ("permit", "deny"):
        raise ValueError("decision is 'permit' or 'deny'")
    _require(recipient_org=recipient_org, patient_nhs=patient_nhs, reason=reason)
    if not all(isinstance(c, str) and c for c in categories):
        raise ValueError("every data category is a non-empty code")
    agents = [
        # BALP AuthZconsent: the authorizer agent is the audit source itself.
        {
            "type": _concept(EXTRA_SECURITY_ROLE, "authserver", "authorization server"),
            "who": _gateway_ref(),
            "requestor": False,
        },
        _recipient_agent(recipient_org),
        *_caller_agents(ctx, client_type=_application_role(), user_type="IRCP"),
    ]
    entities = [_patient_entity(patient_nhs), _consent_entity(consent_ref, categories), *_trace_entities(ctx)]
    return _event(
        type_=_coding(DCM, "110113", "Security Alert"),
        subtype=_coding(BALP_AUTHZ_SUBTYPE, "AuthZ-Consent", "Authorization Decision using Roles and Consent"),
        action="E",
        outcome=0 if decision == "permit" else 4,
        outcome_desc=reason,
        recorded=recorded,
        agents=agents,
        entities=entities,
        purpose=_treatment(),
    )


def auth_event(ctx: AuditContext, *, outcome: int, description: str | None, recorded: datetime) -> dict[str, Any]:
    """Returns a DCM 110114 User Authentication / 110122 Login event for a token request."""
    agents = [
        {
            "type": _concept(EXTRA_SECURITY_ROLE, "authserver", "authorization server"),
            "who": _gateway_ref(),
            "requestor": False,
        },
        *_caller_agents(ctx, client_type=_application_role(), user_type="AUT"),
    ]
    return _event(
        type_=_coding(DCM, "110114", "User Authentication"),
        subtype=_coding(DCM, "110122", "Login"),
        action="E",
        outcome=outcome,
        outcome_desc=description,
        recorded=recorded,
        agents=agents,
        entities=_trace_entities(ctx),
    )


def system_event(
    ctx: AuditContext,
    *,
    activity: str,
    outcome: int,
    description: str | None,
    recorded: datetime,
    references: Sequence[str] = (),
    patient_nhs: str | None = None,
    action: str = "E",
) -> dict[str, Any]:
    """Returns a DCM 110100 Application Activity event for a worker or CLI action.

    `activity` is our local subtype code (a lower-case token such as `delivery-dead-lettered`
    or `audit-checkpoint-signed`); `references` are the resources it acted on. Raises
    ValueError for a bad activity token, action, outcome or naive time.
    """
    if not _TOKEN_RE.match(activity):
        raise ValueError(f"activity {activity!r} must be a lower-case token")
    if action not in ("C", "R", "U", "D", "E"):
        raise ValueError("action is one of C, R, U, D, E")
    has_caller = bool(ctx.client_id or ctx.user)
    agents = [
        {"type": _application_role(), "who": _gateway_ref(), "requestor": not has_caller},
        *_caller_agents(ctx, client_type=_application_role(), user_type="AUT"),
    ]
    entities: list[dict[str, Any]] = []
    if patient_nhs:
        entities.append(_patient_entity(patient_nhs))
    entities.extend(_resource_entity(ref) for ref in references if ref)
    entities.extend(_trace_entities(ctx))
    return _event(
        type_=_coding(DCM, "110100", "Application Activity"),
        subtype=_coding(LOCAL_AUDIT_SUBTYPE, activity, activity),
        action=action,
        outcome=outcome,
        outcome_desc=description,
        recorded=recorded,
        agents=agents,
        entities=entities,
    )


# --- index ---------------------------------------------------------------------------------------


def index_fields(event: dict[str, Any]) -> dict[str, Any]:
    """Returns the search columns of an AuditEvent, derived only from the event itself.

    Keys: recorded, type_code, subtype_code, action, outcome, patient_nhs, agent_orgs
    (sorted), entity_refs (sorted references and `system|value` identifiers),
    recipient_org. Total over any dict: a part missing from an edited event gives None or
    an empty list, so a comparison with the stored columns fails instead of raising.
    """
    if not isinstance(event, dict):
        raise ValueError("an AuditEvent is a JSON object")
    agents = [a for a in _list(event.get("agent")) if isinstance(a, dict)]
    entities = [e for e in _list(event.get("entity")) if isinstance(e, dict)]
    subtypes = [s for s in _list(event.get("subtype")) if isinstance(s, dict)]
    orgs: set[str] = set()
    recipient: str | None = None
    for agent in agents:
        who = agent.get("who")
        if not isinstance(who, dict) or who.get("type") != "Organization":
            continue
        token = _identifier_token(who.get("identifier"), default_system=ODS_CODE)
        if token is None:
            continue
        orgs.add(token)
        if recipient is None and _has_coding(agent.get("type"), DCM, "110152"):
            recipient = token
    refs: set[str] = set()
    patient: str | None = None
    for entity in entities:
        what = entity.get("what")
        if not isinstance(what, dict):
            continue
        if isinstance(what.get("reference"), str):
            refs.add(what["reference"])
        token = _identifier_token(what.get("identifier"), default_system=None)
        if token is not None:
            refs.add(token)
        identifier = what.get("identifier")
        if patient is None and isinstance(identifier, dict) and identifier.get("system") == NHS_NUMBER:
            role = entity.get("role")
            if isinstance(role, dict) and role.get("system") == OBJECT_ROLE and role.get("code") == "1":
                patient = identifier.get("value") if isinstance(identifier.get("value"), str) else None
    event_type = event.get("type")
    return {
        "recorded": _str_or_none(event.get("recorded")),
        "type_code": _str_or_none(event_type.get("code")) if isinstance(event_type, dict) else None,
        "subtype_code": _str_or_none(subtypes[0].get("code")) if subtypes else None,
        "action": _str_or_none(event.get("action")),
        "outcome": _str_or_none(event.get("outcome")),
        "patient_nhs": patient,
        "agent_orgs": sorted(orgs),
        "entity_refs": sorted(refs),
        "recipient_org": recipient,
    }


# --- parts ---------------------------------------------------------------------------------------


def _event(
    *,
    type_: dict[str, str],
    subtype: dict[str, str],
    action: str,
    outcome: int,
    outcome_desc: str | None,
    recorded: datetime,
    agents: list[dict[str, Any]],
    entities: list[dict[str, Any]],
    purpose: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": type_,
        "subtype": [subtype],
        "action": action,
        "recorded": _instant(recorded),
        "outcome": _outcome(outcome),
    }
    if outcome_desc:
        event["outcomeDesc"] = outcome_desc
    if purpose:
        event["purposeOfEvent"] = purpose
    event["agent"] = agents
    event["source"] = {
        "site": GATEWAY_NAME,
        "observer": _gateway_ref(),
        "type": [_coding(SECURITY_SOURCE_TYPE, "4", "Application Server")],
    }
    if entities:
        event["entity"] = entities
    return event


def _caller_agents(ctx: AuditContext, *, client_type: dict[str, Any], user_type: str) -> list[dict[str, Any]]:
    """The calling client (requestor), its organisation and its user, as far as the context knows them."""
    agents: list[dict[str, Any]] = []
    if ctx.client_id or ctx.source_ip:
        who: dict[str, Any] = {"type": "Device"}
        if ctx.client_id:
            who["identifier"] = {"system": LOCAL_CLIENT_ID, "value": ctx.client_id}
        elif ctx.claimed_client_id:
            who["display"] = f"unidentified client (unverified claim: sub={ctx.claimed_client_id[:100]})"
        else:
            who["display"] = "unidentified client"  # e.g. a token request that failed to authenticate
        client: dict[str, Any] = {"type": client_type, "who": who, "requestor": True}
        if ctx.role:
            client["role"] = [_concept(LOCAL_CLIENT_ROLE, ctx.role)]
        if ctx.source_ip:
            client["network"] = {"address": ctx.source_ip, "type": "2"}  # R4 network-type 2: IP address
        agents.append(client)
    if ctx.organisation:
        # BALP AuthZconsent "userorg": v3-RoleClass PROV, not the requestor.
        agents.append(
            {
                "type": _concept(V3_ROLE_CLASS, "PROV", "healthcare provider"),
                "who": {"type": "Organization", "identifier": _org_identifier(ctx.organisation)},
                "requestor": False,
            }
        )
    if ctx.user:
        displays = {"AUT": "author (originator)", "IRCP": "information recipient"}
        who_user: dict[str, Any] = {"identifier": {"value": ctx.user}}
        if ctx.client_id:
            # The gateway cannot check who the end user is: it records whose word it took for it.
            who_user["display"] = f"asserted by client {ctx.client_id}"
        agents.append(
            {
                "type": _concept(V3_PARTICIPATION_TYPE, user_type, displays[user_type]),
                "who": who_user,
                "requestor": True,
            }
        )
    return agents


def _recipient_agent(org: str) -> dict[str, Any]:
    """The organisation receiving the data: DCM 110152 Destination Role ID (BALP PrivacyDisclosure)."""
    return {
        "type": _concept(DCM, "110152", "Destination Role ID"),
        "who": {"type": "Organization", "identifier": _org_identifier(org)},
        "requestor": False,
    }


def _trace_entities(ctx: AuditContext) -> list[dict[str, Any]]:
    """X-Request-ID (BALP XrequestId), X-Correlation-ID (local type) and the decoded NHSD-* headers."""
    out: list[dict[str, Any]] = []
    if ctx.request_id:
        out.append({"type": _coding(BALP_ENTITY_TYPE, "XrequestId"), "what": {"identifier": {"value": ctx.request_id}}})
    if ctx.correlation_id:
        out.append(
            {
                "type": _coding(LOCAL_ENTITY_TYPE, "XcorrelationId", "X-Correlation-ID"),
                "what": {"identifier": {"value": ctx.correlation_id}},
            }
        )
    details = [
        {"type": name, "valueString": value} for name, value in sorted(ctx.routing_headers.items()) if name and value
    ]
    if details:
        out.append(
            {
                "type": _coding(LOCAL_ENTITY_TYPE, "nhsd-routing", "NHSD routing and identity headers"),
                "detail": details,
            }
        )
    return out


def _patient_entity(nhs_number: str) -> dict[str, Any]:
    """BALP entity[patient]: audit-entity-type 1 Person, object-role 1 Patient, by NHS number."""
    if not isinstance(nhs_number, str) or not _NHS_NUMBER_RE.match(nhs_number):
        raise ValueError("patient NHS number must be 10 digits")
    return {
        "type": _coding(AUDIT_ENTITY_TYPE, "1", "Person"),
        "role": _coding(OBJECT_ROLE, "1", "Patient"),
        "what": {"type": "Patient", "identifier": {"system": NHS_NUMBER, "value": nhs_number}},
    }


def _resource_entity(reference: str) -> dict[str, Any]:
    """BALP entity[data]: audit-entity-type 2 System Object, object-role 4 Domain Resource."""
    return {
        "type": _coding(AUDIT_ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
        "what": {"reference": reference},
    }


def _consent_entity(consent_ref: str | None, categories: Iterable[str]) -> dict[str, Any]:
    """BALP AuthZconsent entity[consent]: type resource-types#Consent."""
    what = {"reference": consent_ref} if consent_ref else {"type": "Consent", "display": "no Consent on record"}
    entity: dict[str, Any] = {"type": _coding(RESOURCE_TYPES, "Consent", "Consent"), "what": what}
    details = [{"type": DATA_CATEGORY, "valueString": c} for c in categories]
    if details:
        entity["detail"] = details
    return entity


def _gateway_ref() -> dict[str, str]:
    """This gateway as a Device: the audit source, and the server/source/authorizer agent."""
    return {"type": "Device", "display": GATEWAY_NAME}


def _source_role() -> dict[str, Any]:
    return _concept(DCM, "110153", "Source Role ID")


def _application_role() -> dict[str, Any]:
    return _concept(DCM, "110150", "Application")


def _treatment() -> list[dict[str, Any]]:
    """purposeOfEvent: v3-ActReason TREAT, the purpose every consent we hold is given for."""
    return [_concept(V3_ACT_REASON, "TREAT", "treatment")]


def _org_identifier(org: str) -> dict[str, str]:
    """An ODS code, or a `system|value` token for an organisation without one."""
    system, bar, value = org.partition("|")
    if bar and system and value:
        return {"system": system, "value": value}
    return {"system": ODS_CODE, "value": org}


def _identifier_token(identifier: Any, *, default_system: str | None) -> str | None:
    """`value` when the system is the default (or absent), else `system|value`."""
    if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
        return None
    system = identifier.get("system")
    if not isinstance(system, str) or system == default_system:
        return identifier["value"]
    return f"{system}|{identifier['value']}"


def _has_coding(concept: Any, system: str, code: str) -> bool:
    if not isinstance(concept, dict):
        return False
    return any(
        isinstance(c, dict) and c.get("system") == system and c.get("code") == code
        for c in _list(concept.get("coding"))
    )


def _instant(value: datetime) -> str:
    """An R4 `instant` in UTC with microseconds, e.g. 2024-05-01T09:30:00.000000Z."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("recorded must be a timezone-aware datetime")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _outcome(value: int) -> str:
    if isinstance(value, bool) or value not in OUTCOMES:
        raise ValueError("outcome is one of 0, 4, 8, 12 (R4 audit-event-outcome)")
    return str(value)


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)]}


def _require(**values: str) -> None:
    for name, value in values.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
