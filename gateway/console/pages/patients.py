"""The IG officer's patient page: look up an NHS number, see the plain-English timeline, download the
subject access pack (PDF or CSV). Every look-up and every pack is audited, with the officer's name."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from audit.events import system_event
from audit.store import append
from gateway.console import access_pack
from gateway.console.roles import ConsoleRole, register_nav
from gateway.console.timeline import Timeline, load_timeline
from gateway.console.web import Viewer, form_with_csrf, redirect, render, require, state
from gateway.db import transaction
from profiles.nhs_number import explain

router = APIRouter(include_in_schema=False)
register_nav("Patients", "/console/patients", ConsoleRole.IG_OFFICER)
ig_officer = require(ConsoleRole.IG_OFFICER)


def _clean(value: str) -> str:
    """People type NHS numbers with spaces or dashes (943 476 5919): keep the digits' order, drop those."""
    return re.sub(r"[\s-]", "", value or "")


@router.get("/console/patients")
def look_up_form(request: Request, viewer: Viewer = Depends(ig_officer)) -> Response:
    return render(request, "patient_search.html", viewer=viewer, error=None, value="")


@router.post("/console/patients")
async def look_up(request: Request, viewer: Viewer = Depends(ig_officer)) -> Response:
    form = await form_with_csrf(request, viewer.csrf_token)
    typed = form.get("nhs_number", "")
    nhs = _clean(typed)
    problem = "Enter an NHS number" if not nhs else explain(nhs)
    if problem:
        return render(request, "patient_search.html", viewer=viewer, error=problem, value=typed)
    return redirect(f"/console/patients/{nhs}")


def _timeline(request: Request, viewer: Viewer, nhs: str, activity: str, what: str) -> Timeline:
    """Reads the timeline and audits the look-up in one transaction: no record, no disclosure."""
    with transaction(state(request).engine) as session:
        timeline = load_timeline(session, nhs)
        append(
            session,
            system_event(
                viewer.audit_context(request),
                activity=activity,
                outcome=0,
                description=f"{what}: {len(timeline.entries)} timeline entries",
                recorded=datetime.now(UTC),
                patient_nhs=nhs,
                action="R",
            ),
        )
    return timeline


def _checked(request: Request, viewer: Viewer, nhs: str) -> Response | None:
    problem = explain(nhs)
    if problem:
        return render(request, "patient_search.html", viewer=viewer, error=problem, value=nhs, status=400)
    return None


@router.get("/console/patients/{nhs}")
def patient(nhs: str, request: Request, viewer: Viewer = Depends(ig_officer)) -> Response:
    refused = _checked(request, viewer, nhs)
    if refused:
        return refused
    timeline = _timeline(request, viewer, nhs, "console-patient-lookup", "IG console patient look-up")
    return render(
        request,
        "patient.html",
        viewer=viewer,
        timeline=timeline,
        nhs=nhs,
        nhs_display=access_pack.format_nhs_number(nhs),
    )


def _pack(request: Request, viewer: Viewer, nhs: str, fmt: str) -> tuple[Timeline, access_pack.Verification, dict]:
    timeline = _timeline(request, viewer, nhs, "console-subject-access-pack", f"subject access pack ({fmt})")
    app = state(request)
    verification = access_pack.verify_for_pack(app.engine, app.settings, viewer.audit_context(request))
    return timeline, verification, access_pack.proofs(app.engine, timeline, verification)


@router.get("/console/patients/{nhs}/access-pack.pdf")
def pack_pdf(nhs: str, request: Request, viewer: Viewer = Depends(ig_officer)) -> Response:
    refused = _checked(request, viewer, nhs)
    if refused:
        return refused
    pdf = access_pack.render_pdf(*_pack(request, viewer, nhs, "PDF"))
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": 'attachment; filename="subject-access-pack.pdf"'},
    )


@router.get("/console/patients/{nhs}/access-pack.csv")
def pack_csv(nhs: str, request: Request, viewer: Viewer = Depends(ig_officer)) -> Response:
    refused = _checked(request, viewer, nhs)
    if refused:
        return refused
    return Response(
        access_pack.render_csv(*_pack(request, viewer, nhs, "CSV")),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="subject-access-pack.csv"'},
    )
