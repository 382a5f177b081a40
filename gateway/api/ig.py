"""The IG officer API (/ig/v1): the per-patient disclosure report (IG rule 5) and inclusion proofs.

Both read the audit log only; both are audited themselves. The NHS number in the report's path
never reaches the application log (the access log writes route templates, not paths).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from audit.events import rest_event, system_event
from audit.proofs import ProofError, prove
from audit.reports import disclosure_report
from gateway.auth.principal import Role
from gateway.context import RequestContext
from gateway.deps import requires
from gateway.http import JsonResponse
from gateway.organisations import approve_agreement, list_organisations, public_view
from profiles import systems
from profiles.nhs_number import explain
from profiles.outcomes import bad_request, forbidden, not_found

router = APIRouter(prefix="/ig/v1", tags=["IG officers"])


@router.get("/patients/{nhs_number}/disclosures", name="ig.disclosure-report")
def disclosures(
    nhs_number: str,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
    ctx: RequestContext = Depends(requires("AuditEvent", "s", "ig-disclosure-report")),
) -> Response:
    """Who has received what about this patient, when and on what basis (JSON, or CSV with ?format=csv)."""
    reason = explain(nhs_number)
    if reason is not None:
        raise bad_request(reason, expression="nhs_number")
    with ctx.transaction() as session:
        names = {org.id: org.name for org in list_organisations(session)}
        report = disclosure_report(session, nhs_number, organisation_names=names)
        ctx.audit(
            system_event(
                ctx.audit_context,
                activity="ig-disclosure-report",
                outcome=0,
                description=f"disclosure report: {len(report.disclosures)} disclosures, "
                f"{len(report.consent_decisions)} consent decisions ({fmt})",
                recorded=ctx.now(),
                patient_nhs=nhs_number,
                action="R",
            )
        )
    if fmt == "csv":
        return Response(
            report.to_csv(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="disclosures.csv"'},
        )
    return JsonResponse({"patient": {"system": systems.NHS_NUMBER, "value": nhs_number}, **report.to_json()})


@router.get("/audit/{seq}/proof", name="ig.audit-proof")
def audit_proof(
    seq: int,
    size: int | None = None,
    ctx: RequestContext = Depends(requires("AuditEvent", "r", "ig-audit-proof")),
) -> JsonResponse:
    """An RFC 9162 inclusion proof of entry `seq` (in the tree of `size` entries; default: the whole log)."""
    try:
        proof = prove(ctx.engine, seq, size=size)
    except ProofError as exc:
        raise not_found(str(exc)) from None
    with ctx.transaction():
        ctx.audit(
            rest_event(
                ctx.audit_context,
                interaction="read",
                resource_type="AuditEvent",
                resource_id=str(seq),
                outcome=0,
                patient_nhs=None,
                description=f"inclusion proof in the tree of size {proof['tree_size']}",
                recorded=ctx.now(),
            )
        )
    return JsonResponse(proof)


@router.post("/organisations/{org_id}/agreement/approve", name="ig.approve-agreement")
def approve_agreement_widening(
    org_id: str, ctx: RequestContext = Depends(requires("AuditEvent", "r", "ig-approve-agreement"))
) -> JsonResponse:
    """An IG officer approves an admin's widening of a data-sharing agreement to identifying fields
    (separation of duties: the admin asks, the IG officer decides; both are in the audit)."""
    if ctx.principal is None or ctx.principal.role is not Role.IG_OFFICER:
        raise forbidden("Only an IG officer approves a data-sharing agreement")
    with ctx.transaction() as session:
        try:
            org = approve_agreement(session, org_id)
        except LookupError as exc:
            raise not_found(str(exc)) from None
        ctx.audit(
            system_event(
                ctx.audit_context,
                activity="ig-approve-agreement",
                outcome=0,
                description=f"agreement of {org_id} widened to: {', '.join(org.allowed_fields)}",
                recorded=ctx.now(),
            )
        )
        view = public_view(org)
    return JsonResponse(view)
