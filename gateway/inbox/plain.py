"""A referral packet in plain English: the rows an inbox page shows, built only from what the packet
holds. The packet was already narrowed to the agreement and the consent at this moment
(workflow.read_packet), so whatever is absent here was never disclosed; nothing is looked up elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from mappings.packet import FIELDS

UK = ZoneInfo("Europe/London")

# Content field -> the question a member of staff would ask. Every packet field has a label
# (tests/gateway/inbox/test_plain.py checks), so a new field cannot appear as a raw path.
LABELS: dict[str, str] = {
    "person.first_name": "First name",
    "person.preferred_name": "Likes to be called",
    "person.contact_routes": "How to contact them",
    "person.preferred_contact_time": "Best time to contact them",
    "person.language": "Language",
    "person.interpreter_required": "Needs an interpreter",
    "person.accessibility_needs": "Accessibility needs",
    "person.nhs_number": "NHS number",
    "person.date_of_birth": "Date of birth",
    "person.address": "Address",
    "person.gender": "Gender",
    "referral.need_categories": "What the referral is about",
    "referral.reason_text": "Referrer's note",
    "referral.priority": "Priority",
    "referral.what_matters_to_me": "What matters to them",
    "referral.safeguarding_concern": "Safeguarding",
}
STATUS_TEXT = {
    "new": "New",
    "accepted": "Accepted",
    "declined": "Declined",
    "on-hold": "On hold",
    "in-progress": "In progress",
    "completed": "Completed",
    "recalled": "Recalled by the referrer",
    "ceased": "Consent ended",
}
SAFEGUARDING_TEXT = (
    "The referrer has flagged a safeguarding concern. Speak to the referrer before contacting the person."
)
_ROUTE = {"phone": "Phone", "sms": "Text message", "email": "Email"}
_USE = {"home": "home", "work": "work", "mobile": "mobile", "temp": "temporary"}


@dataclass(frozen=True)
class Row:
    field: str  # the packet path, for the page's ids
    label: str
    value: str | list[str]  # a list renders as one line each


def uk_time(instant: str | datetime | None) -> str:
    """'2 December 2026 at 2:05pm' in UK local time (GMT or BST), or '' when unknown."""
    if instant is None:
        return ""
    moment = datetime.fromisoformat(instant) if isinstance(instant, str) else instant
    local = moment.astimezone(UK)
    hour = local.strftime("%I").lstrip("0")
    return f"{local.day} {local:%B %Y} at {hour}:{local:%M}{local:%p}".replace("AM", "am").replace("PM", "pm")


def uk_date(value: str) -> str:
    """A FHIR date (YYYY, YYYY-MM or YYYY-MM-DD) as people write it: '3 February 1950'."""
    parts = value.split("-")
    if len(parts) == 3:
        day = date.fromisoformat(value)
        return f"{day.day} {day:%B %Y}"
    if len(parts) == 2:
        return f"{date(int(parts[0]), int(parts[1]), 1):%B %Y}"
    return value


def _nhs(value: str) -> str:
    return f"{value[:3]} {value[3:6]} {value[6:]}"


def _route(route: dict[str, str]) -> str:
    kind = _ROUTE.get(route.get("type", ""), route.get("type", "").capitalize())
    use = _USE.get(route.get("use", ""))
    return f"{kind}{f' ({use})' if use else ''}: {route.get('value', '')}"


def _address(address: dict[str, Any]) -> list[str]:
    lines = list(address.get("lines") or [])
    lines += [address[k] for k in ("city", "district", "postcode") if address.get(k)]
    return lines or [address.get("text", "")]


def _value(path: str, value: Any) -> str | list[str]:
    if path == "person.contact_routes":
        return [_route(r) for r in value]
    if path == "person.interpreter_required":
        return "Yes" if value else "No"
    if path == "person.nhs_number":
        return _nhs(value)
    if path == "person.date_of_birth":
        return uk_date(value)
    if path == "person.address":
        return _address(value)
    if path == "person.gender":
        return str(value).capitalize()
    if path == "referral.priority":
        return {"asap": "As soon as possible", "stat": "Immediately"}.get(value, str(value).capitalize())
    if path == "referral.safeguarding_concern":
        return SAFEGUARDING_TEXT
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


def rows(packet: dict[str, Any]) -> list[Row]:
    """Returns the packet's content fields, in the packet's own field order, as labelled plain text."""
    out = []
    for spec in FIELDS:
        group, name = spec.path.split(".")
        value = (packet.get(group) or {}).get(name)
        if value is None:
            continue
        out.append(Row(spec.path.replace(".", "-").replace("_", "-"), LABELS[spec.path], _value(spec.path, value)))
    return out


def title(packet: dict[str, Any]) -> str:
    """What a referral is called on the page: the person's first name when the packet carries it."""
    person = packet.get("person") or {}
    name = person.get("first_name") or person.get("preferred_name")
    return name or f"Referral {packet.get('referral_id', '')}"
