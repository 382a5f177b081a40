"""`GET /fhir/AuditEvent` and `GET /fhir/AuditEvent/{id}`: the audit log as FHIR, for IG officers.

The parameters are data in audit/search.py; this module checks the token, runs the search,
audits the search itself (BALP Query: rest / search-type, E) and answers with a searchset.
An AuditEvent's id is its sequence number in the log.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from audit import search as audit_search
from audit.events import rest_event
from gateway.api.fhir_common import search_params, searchset
from gateway.context import RequestContext
from gateway.deps import requires
from gateway.http import FhirResponse
from gateway.storage.repository import Stored
from profiles.outcomes import FhirError, Issue, bad_request, not_found

router = APIRouter(prefix="/fhir")


class _StoredBytes(FhirResponse):
    """An entry's stored canonical JSON, sent byte for byte (a reader can recompute its leaf hash)."""

    def render(self, content: Any) -> bytes:
        return content.encode() if isinstance(content, str) else super().render(content)


def _searched_nhs(params: list[tuple[str, str]]) -> str | None:
    for name, value in params:
        if name == "patient:identifier":
            nhs = value.rpartition("|")[2]
            return nhs if nhs.isdigit() and len(nhs) == 10 else None
    return None


def _described(params: list[tuple[str, str]]) -> str:
    """The query for the audit trail, with the NHS number replaced (the patient entity carries it)."""
    parts = (f"{k}={'<nhs-number>' if k == 'patient:identifier' else v}" for k, v in params)
    return ("AuditEvent search " + "&".join(parts))[:500]


def _archived_outcome(count: int) -> dict[str, Any]:
    """A searchset entry (search.mode outcome) saying that some matches live only in archive segments."""
    return {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": f"{count} more matching entries are archived: their content is in the audit "
                    "archive segments (see docs/audit.md, Retention), not in this database",
                }
            ],
        },
        "search": {"mode": "outcome"},
    }


@router.get("/AuditEvent", name="AuditEvent.search-type")
def search_audit_events(
    request: Request, ctx: RequestContext = Depends(requires("AuditEvent", "s", "search-type"))
) -> FhirResponse:
    params, count, offset = search_params(request, ctx)
    with ctx.transaction() as session:
        try:
            page = audit_search.search(session, params, count=count, offset=offset)
        except audit_search.AuditSearchError as exc:
            raise bad_request(str(exc), expression=exc.parameter) from None
        ctx.audit(
            rest_event(
                ctx.audit_context,
                interaction="search-type",
                resource_type="AuditEvent",
                resource_id=None,
                outcome=0,
                patient_nhs=_searched_nhs(params),
                description=_described(params),
                recorded=ctx.now(),
            )
        )
    items = [Stored(resource=r, version_id=1, tenant="", pk=int(r["id"])) for r in page.resources]
    bundle = searchset(ctx, "AuditEvent", items, params, count, offset, page.has_more)
    if page.archived_matches:
        bundle["entry"].append(_archived_outcome(page.archived_matches))
    return FhirResponse(bundle)


@router.get("/AuditEvent/{resource_id}", name="AuditEvent.read")
def read_audit_event(
    resource_id: str, ctx: RequestContext = Depends(requires("AuditEvent", "r", "read"))
) -> FhirResponse:
    if not resource_id.isdigit() or len(resource_id) > 18:
        raise not_found(f"There is no AuditEvent {resource_id[:40]}: AuditEvent ids are sequence numbers")
    with ctx.transaction() as session:
        entry = audit_search.read(session, int(resource_id))
        if entry is None:
            raise not_found(f"There is no AuditEvent {resource_id}")
        if entry.content is None:
            raise FhirError(
                410,
                [
                    Issue(
                        "deleted",
                        f"AuditEvent {resource_id} was archived to segment {entry.archived_in}; "
                        "its content is kept there, not in this database",
                    )
                ],
            )
        ctx.audit(
            rest_event(
                ctx.audit_context,
                interaction="read",
                resource_type="AuditEvent",
                resource_id=resource_id,
                outcome=0,
                patient_nhs=entry.patient_nhs,
                description="AuditEvent read",
                recorded=ctx.now(),
            )
        )
        content = entry.content
    return _StoredBytes(content)
