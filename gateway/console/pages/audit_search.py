"""Audit search for IG officers: filters, paging, one entry in plain English and as JSON, and its
inclusion proof as a download. The search itself is audit/search.py (the same parameters as
GET /fhir/AuditEvent); every search and every entry viewed is audited, like the API's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from audit import search as audit_search
from audit.events import rest_event
from audit.proofs import ProofError, prove
from audit.store import append
from gateway.console.plain import EVENT_TYPES, OUTCOMES, UK, describe
from gateway.console.roles import ConsoleRole, register_nav
from gateway.console.web import Refusal, Viewer, render, require, state
from gateway.db import transaction
from gateway.organisations import list_organisations
from profiles.nhs_number import explain

router = APIRouter(include_in_schema=False)
register_nav("Audit search", "/console/audit", ConsoleRole.IG_OFFICER)
IG = Depends(require(ConsoleRole.IG_OFFICER))
PAGE_SIZE = 25
MAX_PAGE = 10_000  # offsets beyond this are refused rather than scanned


@dataclass
class Filters:
    """The search form as typed, and what it means as audit/search.py parameters."""

    nhs: str = ""
    date_from: str = ""
    date_to: str = ""
    org: str = ""
    client: str = ""
    type: str = ""
    outcome: str = ""
    page: int = 1
    errors: list[tuple[str, str]] = field(default_factory=list)

    def error(self, name: str) -> str | None:
        return next((message for field_id, message in self.errors if field_id == name), None)

    def query(self, page: int) -> str:
        """Returns the query string of this search at another page (for the paging links)."""
        values = {
            "nhs": self.nhs,
            "from": self.date_from,
            "to": self.date_to,
            "org": self.org,
            "client": self.client,
            "type": self.type,
            "outcome": self.outcome,
        }
        return urlencode({**{k: v for k, v in values.items() if v}, "page": page})


def _uk_midnight(day: date) -> str:
    """Returns the start of a UK calendar day as a UTC FHIR dateTime (the form's dates are UK dates)."""
    moment = datetime.combine(day, time.min, tzinfo=UK)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _day(text: str, name: str, label: str, errors: list[tuple[str, str]]) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors.append((name, f"{label} must be a real date, like 2026-11-21"))
        return None


def read_filters(request: Request) -> Filters:
    """Returns the form's values, with an error for each one that cannot be used."""
    q = request.query_params
    f = Filters(
        nhs=q.get("nhs", "").replace(" ", "").strip(),
        date_from=q.get("from", "").strip(),
        date_to=q.get("to", "").strip(),
        org=q.get("org", "").strip(),
        client=q.get("client", "").strip(),
        type=q.get("type", "").strip(),
        outcome=q.get("outcome", "").strip(),
    )
    try:
        f.page = max(1, min(MAX_PAGE, int(q.get("page", "1"))))
    except ValueError:
        f.page = 1
    if f.nhs and (reason := explain(f.nhs)) is not None:
        f.errors.append(("nhs", f"Enter a valid NHS number: {reason}"))
    if f.type and f.type not in EVENT_TYPES:
        f.errors.append(("type", "Choose an event type from the list"))
    if f.outcome and f.outcome not in OUTCOMES:
        f.errors.append(("outcome", "Choose an outcome from the list"))
    start = _day(f.date_from, "from", "The start date", f.errors)
    end = _day(f.date_to, "to", "The end date", f.errors)
    if start and end and end < start:
        f.errors.append(("to", "The end date must be the same as or after the start date"))
    return f


def _params(f: Filters) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = [("_sort", "-date")]
    if f.nhs:
        params.append(("patient:identifier", f.nhs))
    if f.date_from:
        params.append(("date", "ge" + _uk_midnight(date.fromisoformat(f.date_from))))
    if f.date_to:
        params.append(("date", "lt" + _uk_midnight(date.fromisoformat(f.date_to) + timedelta(days=1))))
    if f.org:
        params.append(("agent", f.org))
    if f.type:
        params.append(("type", f.type))
    if f.outcome:
        params.append(("outcome", f.outcome))
    return params


def _described(f: Filters) -> str:
    """The search for the audit trail; the NHS number is in the patient entity, not repeated here."""
    parts = [f"{k}={v}" for k, v in _params(f) if k != "patient:identifier"]
    if f.client:
        parts.append(f"client={f.client}")
    return ("console audit search " + "&".join(parts) + f" page {f.page}")[:500]


def _names(session: Any) -> dict[str, str]:
    return {org.id: org.name for org in list_organisations(session)}


@router.get("/console/audit")
def audit_search_page(request: Request, viewer: Viewer = IG) -> Response:
    f = read_filters(request)
    engine = state(request).engine
    with transaction(engine) as session:
        names = _names(session)
        organisations = sorted(names.items(), key=lambda item: item[1].lower())
        if f.org and f.org not in names:
            f.errors.append(("org", "Choose an organisation from the list"))
        extra = []
        if f.client:
            try:
                extra.append(audit_search.client_condition(f.client))
            except audit_search.AuditSearchError as exc:
                f.errors.append(("client", f"Enter a client id: {exc}"))
        if f.errors:
            return render(
                request, "audit_search.html", viewer=viewer, status=400, f=f, organisations=organisations,
                types=EVENT_TYPES, outcomes=OUTCOMES, rows=None, has_more=False, archived=0,
            )  # fmt: skip
        page = audit_search.search(session, _params(f), count=PAGE_SIZE, offset=(f.page - 1) * PAGE_SIZE, extra=extra)
        rows = [describe(int(r["id"]), r, names) for r in page.resources]
        append(
            session,
            rest_event(
                viewer.audit_context(request),
                interaction="search-type",
                resource_type="AuditEvent",
                resource_id=None,
                outcome=0,
                patient_nhs=f.nhs or None,
                description=_described(f),
                recorded=datetime.now(UTC),
            ),
        )
    return render(
        request, "audit_search.html", viewer=viewer, f=f, organisations=organisations, types=EVENT_TYPES,
        outcomes=OUTCOMES, rows=rows, has_more=page.has_more, archived=page.archived_matches,
    )  # fmt: skip


def _entry(request: Request, viewer: Viewer, seq: int, what: str) -> tuple[dict[str, Any], str, dict[str, str]]:
    """Returns (entry, stored JSON, organisation names) of a live entry, auditing the read; 404 otherwise."""
    with transaction(state(request).engine) as session:
        stored = audit_search.read(session, seq)
        if stored is None or stored.content is None:
            archived = stored is not None
            raise Refusal(
                404,
                "Entry not available" if archived else "No such entry",
                f"Entry {seq} has been archived: its content is in the audit archive segments."
                if archived
                else f"The audit log has no entry {seq}.",
            )
        entry = orjson.loads(stored.content)
        append(
            session,
            rest_event(
                viewer.audit_context(request),
                interaction="read",
                resource_type="AuditEvent",
                resource_id=str(seq),
                outcome=0,
                patient_nhs=stored.patient_nhs,
                description=f"console: audit entry {seq} {what}",
                recorded=datetime.now(UTC),
            ),
        )
        return entry, stored.content, _names(session)


@router.get("/console/audit/{seq}")
def audit_entry_page(seq: int, request: Request, viewer: Viewer = IG) -> Response:
    entry, _, names = _entry(request, viewer, seq, "viewed")
    pretty = orjson.dumps(entry, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    return render(request, "audit_entry.html", viewer=viewer, event=describe(seq, entry, names), pretty=pretty)


@router.get("/console/audit/{seq}/entry.json")
def audit_entry_json(seq: int, request: Request, viewer: Viewer = IG) -> Response:
    """The stored canonical bytes: SHA-256(0x00 || this file) is the entry's leaf hash."""
    _, content, _ = _entry(request, viewer, seq, "downloaded as JSON")
    return Response(
        content.encode(),
        media_type="application/fhir+json",
        headers={"Content-Disposition": f'attachment; filename="audit-entry-{seq}.json"'},
    )


@router.get("/console/audit/{seq}/proof.json")
def audit_entry_proof(seq: int, request: Request, viewer: Viewer = IG) -> Response:
    """An RFC 9162 inclusion proof of the entry in the log as it stands (with its checkpoint when one exists)."""
    _entry(request, viewer, seq, "inclusion proof downloaded")
    try:
        proof = prove(state(request).engine, seq)
    except ProofError as exc:
        raise Refusal(409, "No proof can be given", str(exc)) from None
    return Response(
        orjson.dumps(proof, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="audit-entry-{seq}-inclusion-proof.json"'},
    )
