"""Long console tasks (verifying the audit log, exporting a date range) run in a background thread;
their progress lives in the database, so the page polling for it (htmx) may reach any worker.

    start(kind, user, work) ──▶ console_job row (running, 0 of ?) ──▶ thread runs work(progress)
    progress(done, total)   ──▶ row updated at most every PROGRESS_SECONDS
    work returns a dict     ──▶ row done, result JSON; an exception ──▶ row failed (type only)

A job belongs to the person who started it: another person's job id reads as not found.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Column, Engine, Text
from sqlmodel import Field, Session, SQLModel, select

from gateway.errors import trace_without_messages
from gateway.models import now_utc

log = logging.getLogger("spgw.console.jobs")
PROGRESS_SECONDS = 0.25  # how often a running job writes its progress
Work = Callable[[Callable[[int, int], None]], dict[str, Any]]


class ConsoleJob(SQLModel, table=True):
    """One background task started from the console."""

    __tablename__ = "console_job"
    id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(max_length=16)  # "verify" | "export"
    username: str = Field(foreign_key="console_user.username", index=True, max_length=64)
    state: str = Field(default="running", max_length=16)  # running | done | failed
    done: int = 0
    total: int = 0
    started: datetime = Field(default_factory=now_utc)
    finished: datetime | None = None
    result: str | None = Field(default=None, sa_column=Column(Text, nullable=True))  # JSON


@dataclass(frozen=True)
class JobView:
    """A job as a page shows it."""

    id: str
    kind: str
    state: str
    done: int
    total: int
    started: datetime
    finished: datetime | None
    result: dict[str, Any]

    @property
    def percent(self) -> int:
        if self.state != "running":
            return 100
        return min(99, self.done * 100 // self.total) if self.total else 0


def _view(job: ConsoleJob) -> JobView:
    return JobView(
        job.id,
        job.kind,
        job.state,
        job.done,
        job.total,
        job.started,
        job.finished,
        orjson.loads(job.result) if job.result else {},
    )


def _update(engine: Engine, job_id: str, **values: Any) -> None:
    with Session(engine) as session:
        job = session.get(ConsoleJob, job_id)
        if job is not None:
            for name, value in values.items():
                setattr(job, name, value)
            session.add(job)
            session.commit()


def _run(engine: Engine, job_id: str, work: Work) -> None:
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_SECONDS:
            last = time.monotonic()
            _update(engine, job_id, done=done, total=total)

    try:
        result = work(progress)
    except Exception as exc:
        # Types and frames only: a message could quote audit content.
        log.error("console job %s failed\n%s", job_id, trace_without_messages(exc))
        _update(engine, job_id, state="failed", finished=now_utc(), result=orjson.dumps({}).decode())
        return
    _update(engine, job_id, state="done", finished=now_utc(), result=orjson.dumps(result).decode())


def start(engine: Engine, *, kind: str, username: str, work: Work) -> str:
    """Records a new job for `username` and runs `work` in a background thread; returns the job's id."""
    job_id = secrets.token_hex(16)
    with Session(engine) as session:
        session.add(ConsoleJob(id=job_id, kind=kind, username=username))
        session.commit()
    threading.Thread(target=_run, args=(engine, job_id, work), name=f"spgw-console-{kind}", daemon=True).start()
    return job_id


def get(engine: Engine, *, job_id: str, username: str, kind: str) -> JobView | None:
    """Returns the job if it is this person's and of this kind, else None."""
    with Session(engine) as session:
        job = session.exec(
            select(ConsoleJob).where(ConsoleJob.id == job_id, ConsoleJob.username == username, ConsoleJob.kind == kind)
        ).first()
        return _view(job) if job is not None else None


def latest(engine: Engine, *, username: str, kind: str) -> JobView | None:
    """Returns this person's newest job of this kind, or None."""
    with Session(engine) as session:
        job = session.exec(
            select(ConsoleJob)
            .where(ConsoleJob.username == username, ConsoleJob.kind == kind)
            .order_by(ConsoleJob.started.desc())  # type: ignore[attr-defined]
            .limit(1)
        ).first()
        return _view(job) if job is not None else None
