"""The referral inbox for `vcse-staff`: the host's referrals in plain English, accept / decline / on
hold, recall and cease notices to acknowledge, outcomes forms and a CSV export. The work is done by
gateway.inbox (on the same pipeline as /vcse/v1); this module is the HTTP side only."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlmodel import select
from starlette.responses import Response

from gateway.console.roles import ConsoleRole, register_nav
from gateway.console.web import Refusal, Viewer, form_with_csrf, redirect, render, require
from gateway.inbox import outcome_form, service
from gateway.inbox.context import host_context
from gateway.models import OutcomeRecord
from gateway.pipeline import outcomes, workflow
from mappings.outcome_codes import swemwbs_metric
from mappings.outcome_schema import parse_submission
from profiles.outcomes import FhirError

router = APIRouter(include_in_schema=False)
register_nav("Inbox", "/console/inbox", ConsoleRole.VCSE_STAFF)
staff = require(ConsoleRole.VCSE_STAFF)

# ?done=... after a post/redirect/get: what the page confirms (anything else is ignored).
DONE = {
    "accepted": "You accepted this referral. The referrer can see that it was accepted.",
    "on-hold": "You put this referral on hold. The referrer can see that it is on hold.",
    "declined": "You declined this referral. The referrer can see your reason.",
    "acknowledged": "Notice acknowledged.",
}


def _refusal(error: FhirError) -> Refusal:
    text = "; ".join(i.diagnostics for i in error.issues) or "The request could not be completed."
    if error.status == 404:
        return Refusal(404, "Referral not found", "There is no referral with that reference in your inbox.")
    if error.status == 409:
        return Refusal(409, "This referral cannot change now", text)
    return Refusal(error.status if 400 <= error.status < 500 else 400, "There is a problem", text)


@router.get("/console/inbox")
def inbox(request: Request, viewer: Viewer = Depends(staff), done: str | None = None) -> Response:
    items, notices = service.inbox(host_context(request, viewer))
    pending = [n for n in notices if not n.acknowledged_by]
    return render(
        request,
        "inbox.html",
        viewer=viewer,
        title="Referral inbox",
        items=items,
        pending=pending,
        done=DONE.get(done or ""),
    )


@router.get("/console/inbox/export.csv")
def export(request: Request, viewer: Viewer = Depends(staff)) -> Response:
    text, _ = service.export_csv(host_context(request, viewer))
    name = f"referrals-{viewer.user.organisation_id}.csv".replace('"', "")
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/console/inbox/{referral_id}")
def referral(referral_id: str, request: Request, viewer: Viewer = Depends(staff), done: str | None = None) -> Response:
    try:
        item, notices, records = service.referral(host_context(request, viewer), referral_id)
    except FhirError as exc:
        raise _refusal(exc) from None
    return render(
        request,
        "inbox_referral.html",
        viewer=viewer,
        title=item.title,
        item=item,
        notices=notices,
        records=records,
        done=DONE.get(done or ""),
        may_record=item.status in outcomes.OPEN_STATES,
    )


async def _decide(request: Request, viewer: Viewer, referral_id: str, status: str) -> Response:
    await form_with_csrf(request, viewer.csrf_token)
    try:
        service.set_status(host_context(request, viewer), referral_id, status)
    except FhirError as exc:
        raise _refusal(exc) from None
    return redirect(f"/console/inbox/{referral_id}?done={status}")


@router.post("/console/inbox/{referral_id}/accept")
async def accept(referral_id: str, request: Request, viewer: Viewer = Depends(staff)) -> Response:
    return await _decide(request, viewer, referral_id, "accepted")


@router.post("/console/inbox/{referral_id}/hold")
async def hold(referral_id: str, request: Request, viewer: Viewer = Depends(staff)) -> Response:
    return await _decide(request, viewer, referral_id, "on-hold")


def _decline_page(request: Request, viewer: Viewer, item: service.Item, form: dict[str, str], errors: list) -> Response:
    return render(
        request,
        "inbox_decline.html",
        viewer=viewer,
        status=400 if errors else 200,
        title=f"Decline the referral for {item.title}",
        item=item,
        reasons=service.DECLINE_REASONS,
        form=form,
        errors=errors,
        field_errors=dict(errors),
    )


@router.get("/console/inbox/{referral_id}/decline")
def decline_form(referral_id: str, request: Request, viewer: Viewer = Depends(staff)) -> Response:
    try:
        item, _, _ = service.referral(host_context(request, viewer), referral_id)
    except FhirError as exc:
        raise _refusal(exc) from None
    return _decline_page(request, viewer, item, {}, [])


@router.post("/console/inbox/{referral_id}/decline")
async def decline(referral_id: str, request: Request, viewer: Viewer = Depends(staff)) -> Response:
    form = await form_with_csrf(request, viewer.csrf_token)
    ctx = host_context(request, viewer)
    try:
        reason = service.decline_reason(form.get("reason", ""), form.get("detail", ""))
        service.set_status(ctx, referral_id, "declined", reason)
    except FhirError as exc:
        if exc.status != 422:
            raise _refusal(exc) from None
        item, _, _ = service.referral(host_context(request, viewer), referral_id)
        errors = [(i.expression or "reason", i.diagnostics) for i in exc.issues]
        return _decline_page(request, viewer, item, form, errors)
    return redirect(f"/console/inbox/{referral_id}?done=declined")


@router.post("/console/inbox/notices/{packet_id}/acknowledge")
async def acknowledge(packet_id: str, request: Request, viewer: Viewer = Depends(staff)) -> Response:
    form = await form_with_csrf(request, viewer.csrf_token)
    try:
        service.acknowledge(host_context(request, viewer), packet_id, viewer.user.username)
    except FhirError:
        raise Refusal(404, "Notice not found", "There is no notice with that reference in your inbox.") from None
    back = form.get("back", "")
    target = back if back.startswith("/console/inbox") and "//" not in back else "/console/inbox"
    return redirect(f"{target}?done=acknowledged")


def _outcomes_page(
    request: Request, viewer: Viewer, item: service.Item, form: dict[str, str], errors: list, status: int = 200
) -> Response:
    return render(
        request,
        "inbox_outcomes.html",
        viewer=viewer,
        status=status,
        title=f"Record outcomes for {item.title}",
        item=item,
        form=form,
        errors=[(e.field, e.message) for e in errors],
        field_errors={e.field: e.message for e in errors},
        q=outcome_form,
    )


@router.get("/console/inbox/{referral_id}/outcomes")
def outcomes_form(referral_id: str, request: Request, viewer: Viewer = Depends(staff)) -> Response:
    try:
        item, _, _ = service.referral(host_context(request, viewer), referral_id)
    except FhirError as exc:
        raise _refusal(exc) from None
    # A fresh submission id per form: submitting the same form twice records it once (as in the API).
    return _outcomes_page(request, viewer, item, {"submission_id": "console-" + secrets.token_hex(8)}, [])


@router.post("/console/inbox/{referral_id}/outcomes")
async def record_outcomes(referral_id: str, request: Request, viewer: Viewer = Depends(staff)) -> Response:
    form = await form_with_csrf(request, viewer.csrf_token)
    ctx = host_context(request, viewer)
    data = outcome_form.to_submission(form, ctx.now())
    try:
        with ctx.transaction():
            _, answer = outcomes.submit(ctx, referral_id, data)
    except FhirError as exc:
        if exc.status not in (400, 422):
            raise _refusal(exc) from None
        item, _, _ = service.referral(host_context(request, viewer), referral_id)
        return _outcomes_page(request, viewer, item, form, outcome_form.errors_for(exc.issues), status=400)
    return redirect(f"/console/inbox/{referral_id}/outcomes/{answer['submission_id']}")


@router.get("/console/inbox/{referral_id}/outcomes/{submission_id}")
def recorded(referral_id: str, submission_id: str, request: Request, viewer: Viewer = Depends(staff)) -> Response:
    ctx = host_context(request, viewer)
    with ctx.transaction() as session:
        try:
            workflow.owned(ctx, referral_id)  # the host's own referral, or 404
        except FhirError as exc:
            raise _refusal(exc) from None
        record = session.exec(
            select(OutcomeRecord).where(
                OutcomeRecord.referral_id == referral_id, OutcomeRecord.submission_id == submission_id
            )
        ).first()
    if record is None:
        raise Refusal(404, "Outcomes not found", "There are no outcomes with that reference for this referral.")
    sub = parse_submission(record.submission)
    summary: dict[str, Any] = {"sub": sub}
    if sub.swemwbs is not None:
        summary["swemwbs_metric"] = swemwbs_metric(sub.swemwbs.raw_total)
    return render(
        request,
        "inbox_outcome_done.html",
        viewer=viewer,
        title="Outcomes recorded",
        referral_id=referral_id,
        record=record,
        q=outcome_form,
        **summary,
    )
