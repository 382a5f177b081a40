"""The audit log's integrity, as the gateway checks it: verification against the witness, the signed
statement of a verification, and automatic checkpoints published to the witness.

    checkpoint to check against ──▶ the newest note in the witness folder (signature-checked);
                                    when the witness holds none, the newest in the database
    verify_log(checkpoint)      ──▶ a report naming the first entry at fault
    statement(report)           ──▶ a signed note (C2SP signed-note, the checkpoint key) saying
                                    what was verified, when, and with what result

The witness is the only checkpoint a wholesale rewrite of the database cannot also rewrite, so
it is preferred; the database's own newest checkpoint still proves append-only growth.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select
from sqlmodel import Session

from audit.checkpoint import Checkpoint, CheckpointError, Signer, parse_and_verify, sign_note
from audit.events import AuditContext, system_event
from audit.store import AuditCheckpointRecord, append
from audit.verify import Progress, VerifyReport, verify_log
from audit.witness import WitnessError, checkpoint_and_publish, latest
from gateway.auth.keys import audit_signing_key
from gateway.errors import trace_without_messages
from gateway.settings import Settings

log = logging.getLogger("spgw.integrity")
UK = ZoneInfo("Europe/London")
CHECKPOINT_CONTEXT = AuditContext(client_id="spgw-checkpoints")


@dataclass(frozen=True)
class CheckedAgainst:
    """The checkpoint a verification was run against, and where it came from."""

    checkpoint: Checkpoint
    source: str  # "witness <file>" or "database"


@dataclass(frozen=True)
class Verification:
    """A finished verification: the report, what it was checked against, when, and the signed statement."""

    report: VerifyReport
    against: CheckedAgainst | None
    finished: datetime
    statement: str


def audit_signer(settings: Settings) -> Signer:
    """Returns the log's checkpoint signer: the gateway's audit signing key, handed to audit/ (which
    never reads the key folder itself)."""
    return Signer(settings.audit_origin, audit_signing_key(settings.keys_dir))


def _key(settings: Settings):  # type: ignore[no-untyped-def]
    signer = audit_signer(settings)
    return signer.origin, signer.key


def reference_checkpoint(engine: Engine, settings: Settings) -> CheckedAgainst | None:
    """Returns the checkpoint to verify against: the witness's newest, else the database's newest.

    Raises WitnessError when the witness holds a note that is unreadable or signed by another key.
    """
    name, private = _key(settings)
    witnessed = latest(settings.witness_folder, name, private.public_key())
    if witnessed is not None:
        return CheckedAgainst(witnessed.checkpoint, f"witness {witnessed.path}")
    with Session(engine) as session:
        note = session.scalars(
            select(AuditCheckpointRecord.note).order_by(AuditCheckpointRecord.size.desc()).limit(1)  # type: ignore[attr-defined]
        ).first()
    if note is None:
        return None
    try:
        return CheckedAgainst(parse_and_verify(note, name, private.public_key()), "database")
    except CheckpointError:
        return None  # a damaged stored note: verification then runs without it, and says so


def uk_time(moment: datetime) -> str:
    """Returns a moment as people in the UK read it: '2 December 2026, 14:05 GMT'."""
    local = moment.astimezone(UK)
    return f"{local.day} {local:%B %Y, %H:%M:%S} {local.tzname()}"


def statement_text(settings: Settings, report: VerifyReport, against: CheckedAgainst | None, when: datetime) -> str:
    """Returns the lines of the verification statement (signed by `verify`); plain English, one fact a line."""
    lines = [
        f"{settings.audit_origin} verification statement",
        f"Verified at {when.astimezone(UTC).isoformat(timespec='seconds').replace('+00:00', 'Z')} ({uk_time(when)})",
        "Result: INTACT" if report.ok else "Result: FAILED",
        f"Entries verified: {report.size}",
        f"Root hash (RFC 9162, SHA-256): {report.root}",
    ]
    if against is None:
        lines.append("Checked against: no checkpoint (none published yet)")
    else:
        cp = against.checkpoint
        lines.append(f"Checked against: the checkpoint of {cp.size} entries, root {cp.root.hex()}")
        lines.append(f"That checkpoint came from the {against.source}")
        if report.ok and report.consistency is not None:
            lines.append(f"Consistency proof from that checkpoint: {len(report.consistency.proof)} hashes, verified")
    if not report.ok:
        lines.append(f"Problem: {report.problem}")
        if report.first_bad_seq is not None:
            lines.append(f"First entry at fault: {report.first_bad_seq}")
    return "\n".join(line.replace("\n", " ") for line in lines) + "\n"


def verify(
    engine: Engine, settings: Settings, *, progress: Progress | None = None, ctx: AuditContext | None = None
) -> Verification:
    """Verifies the whole log against the reference checkpoint; returns the report and signed statement.

    The verification is itself audited (who asked, and the result). A witness that cannot be read
    is reported as a failure, never skipped.
    """
    try:
        against = reference_checkpoint(engine, settings)
    except WitnessError as exc:
        report = VerifyReport(ok=False, size=0, root="", problem=str(exc))
        against = None
    else:
        report = verify_log(engine, checkpoint=against.checkpoint if against else None, progress=progress)
    if report.ok and report.size == 0:
        # An empty log is not "intact": nothing was checked (a new or a wiped database).
        report = VerifyReport(ok=False, size=0, root=report.root, problem="the audit log is empty: nothing to verify")
    finished = datetime.now(UTC)
    name, private = _key(settings)
    statement = sign_note(statement_text(settings, report, against, finished), name, private)
    with Session(engine) as session:
        append(
            session,
            system_event(
                ctx or AuditContext(),
                activity="audit-verified",
                outcome=0 if report.ok else 8,
                description=(report.summary() if report.problem is None else f"audit log FAILED: {report.problem}")[
                    :500
                ],
                recorded=finished,
                action="E",
            ),
        )
        session.commit()
    return Verification(report=report, against=against, finished=finished, statement=statement)


def publish_due_checkpoint(engine: Engine, settings: Settings, *, force: bool = False) -> str | None:
    """Signs and publishes a checkpoint if the log grew since the last one; returns the note or None."""
    done = checkpoint_and_publish(
        engine,
        audit_signer(settings),
        settings.witness_folder,
        settings.witness_url,
        ctx=CHECKPOINT_CONTEXT,
        force=force,
    )
    return done[0] if done else None


class CheckpointThread(threading.Thread):
    """Signs and publishes a checkpoint every `checkpoint_interval_minutes` (started by serve and demo)."""

    def __init__(self, engine: Engine, settings: Settings, interval_seconds: float | None = None):
        super().__init__(name="spgw-checkpoints", daemon=True)
        self.engine, self.settings = engine, settings
        self.interval = interval_seconds if interval_seconds is not None else settings.checkpoint_interval_minutes * 60
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                publish_due_checkpoint(self.engine, self.settings)
            except WitnessError as exc:
                log.error("checkpoint not published: %s", exc)  # paths and status codes only
            except Exception as exc:
                log.error("checkpoint loop error; continuing\n%s", trace_without_messages(exc))

    def stop(self) -> None:
        self.stopping.set()
