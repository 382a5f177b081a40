"""Date-range exports of the audit log (NDJSON or CSV) for IG officers, written by audit/export.py in the
background with progress (htmx polling), then downloaded by the person who asked for them.

Export files hold patient identifiers: they live under the data folder, readable by the gateway's
user only, are served to the person who made them only, and are removed after EXPORT_KEEP.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import FileResponse, Response

from audit.export import FORMATS, count_in_window, export
from gateway.console import jobs
from gateway.console.plain import UK, uk_time
from gateway.console.roles import ConsoleRole, register_nav
from gateway.console.web import Refusal, Viewer, form_with_csrf, redirect, render, require, state
from gateway.settings import Settings

router = APIRouter(include_in_schema=False)
register_nav("Exports", "/console/exports", ConsoleRole.IG_OFFICER)
IG = Depends(require(ConsoleRole.IG_OFFICER))
KIND = "export"
EXPORT_KEEP = timedelta(hours=24)
MEDIA_TYPES = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
FORMAT_LABELS = {
    "ndjson": "NDJSON: one stored AuditEvent per line, exactly as hashed (for checking with inclusion proofs)",
    "csv": "CSV: one row per entry with its search columns (for spreadsheets)",
}
_JOB_FILE = re.compile(r"\A[0-9a-f]{32}\.(ndjson|csv)\Z")


def export_folder(settings: Settings) -> Path:
    folder = settings.data_dir / "console-exports"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def remove_old_exports(folder: Path, now: datetime) -> None:
    """Deletes export files older than EXPORT_KEEP (they hold patient identifiers)."""
    cutoff = (now - EXPORT_KEEP).timestamp()
    for path in folder.iterdir():
        if _JOB_FILE.match(path.name) and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


def uk_day_start(day: date) -> datetime:
    """The start of a UK calendar day, in UTC (the form's dates are UK dates)."""
    return datetime.combine(day, time.min, tzinfo=UK).astimezone(UTC)


def _form_errors(values: dict[str, str]) -> tuple[list[tuple[str, str]], date | None, date | None]:
    errors: list[tuple[str, str]] = []
    days: dict[str, date | None] = {}
    for name, label in (("from", "the first day"), ("to", "the last day")):
        text = values.get(name, "").strip()
        days[name] = None
        if not text:
            errors.append((name, f"Enter {label} to export"))
            continue
        try:
            days[name] = date.fromisoformat(text)
        except ValueError:
            errors.append((name, f"Enter {label} as a real date, like 2026-11-21"))
    start, end = days["from"], days["to"]
    if start and end and end < start:
        errors.append(("to", "The last day must be the same as or after the first day"))
    if values.get("format") not in FORMATS:
        errors.append(("format-ndjson", "Choose NDJSON or CSV"))
    return errors, start, end


def _page(request: Request, viewer: Viewer, job: jobs.JobView | None, **context: Any) -> Response:
    status = context.pop("status", 200)
    values = context.pop("values", {"format": "ndjson"})
    errors = context.pop("errors", [])
    return render(
        request, "exports.html", viewer=viewer, status=status, job=job, values=values,
        formats=FORMAT_LABELS, errors=errors, field_errors=dict(errors),
    )  # fmt: skip


@router.get("/console/exports")
def exports_page(request: Request, viewer: Viewer = IG) -> Response:
    return _page(request, viewer, jobs.latest(state(request).engine, username=viewer.user.username, kind=KIND))


@router.post("/console/exports")
async def start_export(request: Request, viewer: Viewer = IG) -> Response:
    values = await form_with_csrf(request, viewer.csrf_token)
    errors, first, last = _form_errors(values)
    if errors or first is None or last is None:
        return _page(request, viewer, None, status=400, errors=errors, values=values)
    app = state(request)
    fmt = values["format"]
    start, end = uk_day_start(first), uk_day_start(last + timedelta(days=1))
    folder = export_folder(app.settings)
    remove_old_exports(folder, datetime.now(UTC))
    ctx = viewer.audit_context(request)
    path = folder / f"{secrets.token_hex(16)}.{fmt}"  # not the job id: the thread may start before it is known

    def work(progress: Any) -> dict[str, Any]:
        total = count_in_window(app.engine, start=start, end=end)
        progress(0, total)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "w", newline="", encoding="utf-8") as out:
            result = export(
                app.engine, out, start=start, end=end, fmt=fmt, ctx=ctx, progress=lambda n: progress(n, total)
            )
        return {
            "file": path.name,
            "format": fmt,
            "written": result.written,
            "archived_left_out": result.archived_left_out,
            "from": first.isoformat(),
            "to": last.isoformat(),
            "finished_uk": uk_time(datetime.now(UTC)),
        }

    job_id = jobs.start(app.engine, kind=KIND, username=viewer.user.username, work=work)
    return redirect(f"/console/exports/{job_id}")


def _job(request: Request, viewer: Viewer, job_id: str) -> jobs.JobView:
    job = jobs.get(state(request).engine, job_id=job_id, username=viewer.user.username, kind=KIND)
    if job is None:
        raise Refusal(404, "No such export", "This export was not made by you, or does not exist.")
    return job


@router.get("/console/exports/{job_id}")
def export_job_page(job_id: str, request: Request, viewer: Viewer = IG) -> Response:
    job = _job(request, viewer, job_id)
    if request.headers.get("hx-request"):
        return render(request, "_export_progress.html", viewer=viewer, job=job)
    return _page(request, viewer, job)


@router.get("/console/exports/{job_id}/download")
def download(job_id: str, request: Request, viewer: Viewer = IG) -> Response:
    job = _job(request, viewer, job_id)
    name = str(job.result.get("file", ""))
    path = export_folder(state(request).settings) / name
    if job.state != "done" or not _JOB_FILE.match(name) or not path.is_file():
        raise Refusal(404, "Export not available", "This export has not finished, or was removed after 24 hours.")
    filename = f"audit-{job.result['from']}-to-{job.result['to']}.{job.result['format']}"
    return FileResponse(path, media_type=MEDIA_TYPES[job.result["format"]], filename=filename)
