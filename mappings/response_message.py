"""The BaRS response message: what `$process-message` answers to a referral or cancellation.

FHIR R4 messaging (§2.4, MessageHeader.response) and the BaRS `servicerequest-response` event:
a `message` Bundle whose first entry is a MessageHeader naming the request's MessageHeader id in
`response.identifier`, with `response.code` ok | transient-error | fatal-error, `focus` on the
stored ServiceRequest (and Task), followed by the resources it points at. Pure: the caller passes
the stored resources, the request and the clock.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Literal

from profiles import systems

ResponseCode = Literal["ok", "transient-error", "fatal-error"]
RESPONSE_EVENT = "servicerequest-response"
RESPONSE_PROFILE = "https://fhir.nhs.uk/StructureDefinition/BARSMessageHeader-servicerequest-response"
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # R4 `id` datatype: what MessageHeader.response.identifier is


def request_header_id(bundle: dict[str, Any]) -> str | None:
    """Returns the id of the request's MessageHeader: its `id`, else the uuid of its `urn:uuid:` fullUrl."""
    entries = bundle.get("entry") or []
    first = entries[0] if entries and isinstance(entries[0], dict) else {}
    header = first.get("resource") or {}
    candidate = header.get("id") or str(first.get("fullUrl") or "").removeprefix("urn:uuid:")
    return candidate if isinstance(candidate, str) and _FHIR_ID.fullmatch(candidate) else None


def response_message(
    *,
    request: dict[str, Any],
    code: ResponseCode,
    resources: list[dict[str, Any]],
    focus_types: tuple[str, ...] = ("ServiceRequest", "Task"),
    base_url: str,
    now: datetime,
) -> dict[str, Any]:
    """Returns the response message Bundle for `request` (a message Bundle) about the stored `resources`.

    Every entry's fullUrl is the resource's absolute URL on this server, so `focus` and the
    resources' own relative references (`Patient/...`) resolve against it (R4 §2.36.0.3).
    """
    entries = [
        {"fullUrl": f"{base_url}/fhir/{r['resourceType']}/{r['id']}", "resource": r}
        for r in resources
        if r.get("resourceType") and r.get("id")
    ]
    request_header = ((request.get("entry") or [{}])[0] or {}).get("resource") or {}
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [RESPONSE_PROFILE]},
        "eventCoding": {"system": systems.BARS_MESSAGE_EVENTS, "code": RESPONSE_EVENT},
        "source": {"name": "sp-gateway", "endpoint": f"{base_url}/fhir"},
        "focus": [{"reference": e["fullUrl"]} for e in entries if e["resource"]["resourceType"] in focus_types],
    }
    destination = _reply_destination(request_header)
    if destination:
        header["destination"] = [destination]
    if request_header.get("reason"):
        header["reason"] = request_header["reason"]
    response: dict[str, Any] = {"code": code}
    identifier = request_header_id(request)
    if identifier:
        response = {"identifier": identifier, **response}
    header["response"] = response
    if not header["focus"]:
        del header["focus"]  # FHIR JSON allows no empty arrays
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": _instant(now)},
        "type": "message",
        "timestamp": _instant(now),
        "entry": [{"fullUrl": f"urn:uuid:{header['id']}", "resource": header}, *entries],
    }


def _reply_destination(request_header: dict[str, Any]) -> dict[str, Any] | None:
    """The response goes back to where the request came from: its source endpoint."""
    source = request_header.get("source") or {}
    endpoint = source.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        return None
    out: dict[str, Any] = {"endpoint": endpoint}
    if isinstance(source.get("name"), str):
        out["name"] = source["name"]
    return out


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
