"""Audit entries in plain English for the console: what happened, when (UK local time), who did it,
to whom, about whom, and how it ended. Pure: the entry and the organisation names go in, text comes out.

The stored entry is a FHIR R4 AuditEvent (IHE BALP shapes, see audit/events.py); the codes read here
are the ones audit/events.py writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from audit.events import DATA_CATEGORY, DCM, DISCLOSED_FIELD, LOCAL_CLIENT_ID, LOCAL_PACKET_ID
from profiles.systems import NHS_NUMBER, V3_PARTICIPATION_TYPE

UK = ZoneInfo("Europe/London")

# R4 audit-event-outcome
OUTCOMES = {"0": "Succeeded", "4": "Minor failure", "8": "Serious failure", "12": "Major failure"}
# What an IG officer filters by: the event type codes audit/events.py writes, in words.
EVENT_TYPES = {
    "110106": "Disclosure of patient data",
    "110113": "Consent decision",
    "110114": "Sign-in (user authentication)",
    "110100": "Gateway or command-line activity",
    "rest": "API request",
}
_VERBS = {
    "read": "Read",
    "vread": "Read a version of",
    "history-instance": "Read the history of",
    "search-type": "Searched",
    "search-system": "Searched",
    "create": "Created",
    "update": "Updated",
    "patch": "Updated",
    "delete": "Deleted",
    "operation": "Ran an operation on",
    "capabilities": "Read the capability statement",
}


@dataclass(frozen=True)
class PlainEvent:
    """One entry, ready for an NHS.UK summary list."""

    seq: int
    when: str  # UK local time, e.g. "21 November 2026, 09:00:00 GMT"
    what: str  # one sentence
    outcome: str
    ok: bool
    rows: list[tuple[str, str]]  # (label, value), in reading order


def uk_time(value: str | datetime) -> str:
    """Returns an instant in UK local time, in words people read ('21 November 2026, 09:00:00 GMT')."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(UK)
    return f"{local.day} {local:%B %Y, %H:%M:%S} {local.tzname()}"


def field_words(path: str) -> str:
    """Returns a packet field path in words: 'person.contact_routes' -> 'person: contact routes'."""
    return ": ".join(part.replace("_", " ") for part in path.split("."))


def _items(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _codes(concept: Any) -> set[tuple[Any, Any]]:
    if not isinstance(concept, dict):
        return set()
    codings = _items(concept.get("coding")) or [concept]
    return {(c.get("system"), c.get("code")) for c in codings}


def _details(entity: dict[str, Any], detail_type: str) -> list[str]:
    return [str(d.get("valueString", "")) for d in _items(entity.get("detail")) if d.get("type") == detail_type]


def _org(agent: dict[str, Any], names: Mapping[str, str]) -> str | None:
    who = agent.get("who") or {}
    if who.get("type") != "Organization":
        return None
    value = str((who.get("identifier") or {}).get("value") or "")
    name = names.get(value)
    return f"{name} ({value})" if name else value or None


def _what(event: dict[str, Any], recipient: str | None) -> str:
    type_code = str((event.get("type") or {}).get("code") or "")
    subtype = next(iter(_items(event.get("subtype"))), {})
    code = str(subtype.get("code") or "")
    if type_code == "110106":
        return f"Patient data was disclosed to {recipient or 'an organisation'}"
    if type_code == "110113":
        decision = "permitted" if event.get("outcome") == "0" else "refused"
        return f"Consent check: sharing with {recipient or 'an organisation'} was {decision}"
    if type_code == "110114":
        return "Someone signed in" if event.get("outcome") == "0" else "A sign-in was refused"
    if type_code == "110100":
        return code.replace("-", " ").capitalize() or "Gateway activity"
    if type_code == "rest":
        resource = next(
            (
                str((e.get("type") or {}).get("code"))
                for e in _items(event.get("entity"))
                if (e.get("type") or {}).get("system") == "http://hl7.org/fhir/resource-types"
            ),
            "",
        )
        verb = _VERBS.get(code, code.capitalize())
        return f"{verb} {resource}".strip() if code != "capabilities" else verb
    return EVENT_TYPES.get(type_code, f"Event of type {type_code}")


def describe(seq: int, event: dict[str, Any], names: Mapping[str, str]) -> PlainEvent:
    """Returns entry `seq` in plain English; `names` maps organisation ids to their names."""
    agents = _items(event.get("agent"))
    recipient = next((_org(a, names) for a in agents if (DCM, "110152") in _codes(a.get("type"))), None)
    rows: list[tuple[str, str]] = []
    client = user = None
    orgs: list[str] = []
    for agent in agents:
        who = agent.get("who") or {}
        identifier = who.get("identifier") or {}
        if identifier.get("system") == LOCAL_CLIENT_ID:
            client = str(identifier.get("value"))
        elif (V3_PARTICIPATION_TYPE, "AUT") in _codes(agent.get("type")) or (
            V3_PARTICIPATION_TYPE,
            "IRCP",
        ) in _codes(agent.get("type")):
            user = str(identifier.get("value") or "")
        elif (org := _org(agent, names)) is not None and (DCM, "110152") not in _codes(agent.get("type")):
            orgs.append(org)
    if user:
        rows.append(("Person", user))
    if client:
        rows.append(("System (API client)", client))
    if orgs:
        rows.append(("On behalf of", ", ".join(orgs)))
    if recipient:
        rows.append(("Recipient", recipient))
    for entity in _items(event.get("entity")):
        what = entity.get("what") or {}
        identifier = what.get("identifier") or {}
        if identifier.get("system") == NHS_NUMBER:
            rows.append(("Patient NHS number", str(identifier.get("value"))))
        elif identifier.get("system") == LOCAL_PACKET_ID:
            fields = [
                d.get("valueString", "") for d in _items(entity.get("detail")) if d.get("type") == DISCLOSED_FIELD
            ]
            if fields:
                rows.append(("What was disclosed", "; ".join(field_words(f) for f in fields)))
            rows.append(("Packet", str(identifier.get("value"))))
        elif isinstance(what.get("reference"), str):
            reference = what["reference"]
            label = {"Consent": "Under consent", "ServiceRequest": "Referral"}.get(reference.split("/")[0], "About")
            rows.append((label, reference))
            categories = [
                d.get("valueString", "") for d in _items(entity.get("detail")) if d.get("type") == DATA_CATEGORY
            ]
            if categories:
                rows.append(("Data categories", ", ".join(categories)))
    if event.get("outcomeDesc"):
        rows.append(("Details", str(event["outcomeDesc"])))
    outcome = str(event.get("outcome", ""))
    return PlainEvent(
        seq=seq,
        when=uk_time(str(event.get("recorded", ""))) if event.get("recorded") else "not recorded",
        what=_what(event, recipient),
        outcome=OUTCOMES.get(outcome, outcome),
        ok=outcome == "0",
        rows=rows,
    )
