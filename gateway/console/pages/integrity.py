"""Integrity of the audit log for IG officers: the last checkpoint, its age and whether the witness's copy
agrees with the database; "Verify now" runs gateway/integrity.py in the background, its progress polled
by htmx, and ends with a signed, dated statement to download.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select
from sqlmodel import Session
from starlette.responses import Response

from audit.store import AuditCheckpointRecord
from audit.witness import WitnessError, latest
from gateway import integrity
from gateway.auth.keys import audit_signing_key
from gateway.console import jobs
from gateway.console.plain import uk_time
from gateway.console.roles import ConsoleRole, register_nav
from gateway.console.web import Refusal, Viewer, form_with_csrf, redirect, render, require, state

router = APIRouter(include_in_schema=False)
register_nav("Integrity", "/console/integrity", ConsoleRole.IG_OFFICER)
IG = Depends(require(ConsoleRole.IG_OFFICER))
KIND = "verify"


@dataclass(frozen=True)
class CheckpointStatus:
    """What the page says about checkpoints: the newest in the database and the witness's newest."""

    size: int | None
    signed: str | None
    age: str | None
    witness_size: int | None
    witness_agrees: bool | None  # None: nothing to compare
    witness_problem: str | None
    witness_folder: str
    interval_minutes: int


def age_in_words(then: datetime, now: datetime) -> str:
    """Returns how long ago, roughly, in words: '5 minutes ago', '3 hours ago', '2 days ago'."""
    minutes = max(0, int((now - then).total_seconds() // 60))
    if minutes < 1:
        return "less than a minute ago"
    for size, unit in ((1440, "day"), (60, "hour"), (1, "minute")):
        if minutes >= size:
            count = minutes // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return ""


def checkpoint_status(request: Request) -> CheckpointStatus:
    app = state(request)
    settings = app.settings
    with Session(app.engine) as session:
        newest = session.scalars(
            select(AuditCheckpointRecord).order_by(AuditCheckpointRecord.size.desc()).limit(1)  # type: ignore[attr-defined]
        ).first()
        key = audit_signing_key(settings.keys_dir)
        witness_size = agrees = problem = None
        try:
            witnessed = latest(settings.witness_folder, settings.audit_origin, key.public_key())
        except WitnessError as exc:
            problem = str(exc)
            witnessed = None
        if witnessed is not None:
            witness_size = witnessed.checkpoint.size
            record = session.get(AuditCheckpointRecord, witness_size)
            agrees = record is not None and record.root_hex == witnessed.checkpoint.root.hex()
    created = newest.created.replace(tzinfo=newest.created.tzinfo or UTC) if newest else None
    return CheckpointStatus(
        size=newest.size if newest else None,
        signed=uk_time(created) if created else None,
        age=age_in_words(created, datetime.now(UTC)) if created else None,
        witness_size=witness_size,
        witness_agrees=agrees,
        witness_problem=problem,
        witness_folder=str(settings.witness_folder),
        interval_minutes=settings.checkpoint_interval_minutes,
    )


def _job(request: Request, viewer: Viewer, job_id: str) -> jobs.JobView:
    job = jobs.get(state(request).engine, job_id=job_id, username=viewer.user.username, kind=KIND)
    if job is None:
        raise Refusal(404, "No such verification", "This verification was not started by you, or does not exist.")
    return job


@router.get("/console/integrity")
def integrity_page(request: Request, viewer: Viewer = IG) -> Response:
    last = jobs.latest(state(request).engine, username=viewer.user.username, kind=KIND)
    return render(request, "integrity.html", viewer=viewer, status_=checkpoint_status(request), job=last)


@router.post("/console/integrity/verify")
async def verify_now(request: Request, viewer: Viewer = IG) -> Response:
    await form_with_csrf(request, viewer.csrf_token)
    app = state(request)
    ctx = viewer.audit_context(request)

    def work(progress: Any) -> dict[str, Any]:
        done = integrity.verify(app.engine, app.settings, progress=progress, ctx=ctx)
        report = done.report
        return {
            "ok": report.ok,
            "size": report.size,
            "root": report.root,
            "problem": report.problem,
            "first_bad_seq": report.first_bad_seq,
            "against": done.against.source if done.against else None,
            "against_size": done.against.checkpoint.size if done.against else None,
            "finished": done.finished.isoformat(),
            "finished_uk": uk_time(done.finished),
            "statement": done.statement,
        }

    job_id = jobs.start(app.engine, kind=KIND, username=viewer.user.username, work=work)
    if request.headers.get("hx-request"):
        job = _job(request, viewer, job_id)
        return render(request, "_verify_progress.html", viewer=viewer, job=job)
    return redirect(f"/console/integrity/verify/{job_id}")


@router.get("/console/integrity/verify/{job_id}")
def verification_page(job_id: str, request: Request, viewer: Viewer = IG) -> Response:
    job = _job(request, viewer, job_id)
    if request.headers.get("hx-request"):
        return render(request, "_verify_progress.html", viewer=viewer, job=job)
    return render(request, "integrity.html", viewer=viewer, status_=checkpoint_status(request), job=job)


@router.get("/console/integrity/verify/{job_id}/statement.txt")
def statement(job_id: str, request: Request, viewer: Viewer = IG) -> Response:
    job = _job(request, viewer, job_id)
    if job.state != "done":
        raise Refusal(409, "Not finished yet", "The verification has not finished: there is no statement yet.")
    stamp = job.result["finished"][:19].replace(":", "").replace("-", "")
    return Response(
        job.result["statement"],
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-verification-{stamp}.txt"'},
    )
