"""What the inbox pages do, on top of the VCSE pipeline (gateway.pipeline.workflow and outcomes).

Every read of a packet goes through `workflow.list_packets` / `read_packet` (consent re-checked at
that moment, narrowed with restrict(), audited as a disclosure); every decision through
`workflow.set_status` (the FHIR Task state machine). What is added here is only what a person needs
and a CRM does not: acknowledging notices, the decline reasons, the CSV export.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import func, select

from audit.events import system_event
from gateway.context import RequestContext
from gateway.inbox import plain
from gateway.inbox.models import NoticeAcknowledgement
from gateway.models import Organisation, OutcomeRecord, Packet, Referral, utc
from gateway.pipeline import workflow
from profiles.outcomes import FhirError, Issue

NOTICE_KINDS = ("recall", "cease")
CLOSED = ("recalled", "ceased")
# The short list of reasons for declining (free text may add detail). The chosen text becomes the
# GP's Task.statusReason, so it is written for the referrer to read.
DECLINE_REASONS: dict[str, str] = {
    "not-what-we-offer": "We do not offer the support this person needs",
    "no-capacity": "We have no capacity to take new referrals at the moment",
    "outside-area": "The person lives outside the area we serve",
    "not-eligible": "The person does not meet our eligibility criteria",
    "other": "Other reason",
}


@dataclass
class Item:
    """One referral as the inbox shows it."""

    referral_id: str
    status: str
    title: str
    received: str
    rows: list[plain.Row] = field(default_factory=list)
    referrer: str = ""

    @property
    def status_text(self) -> str:
        return plain.STATUS_TEXT.get(self.status, self.status)

    @property
    def closed(self) -> bool:
        """Recalled or ceased: the person's details are no longer shown."""
        return self.status in CLOSED


@dataclass
class Notice:
    packet_id: str
    referral_id: str
    kind: str
    reason_text: str
    received: str
    acknowledged_by: str | None = None
    acknowledged: str | None = None


def _item(view: dict[str, Any]) -> Item:
    status = view.get("status", "")
    if status in CLOSED:
        # workflow discloses only the id and status of a recalled or ceased referral.
        return Item(view["referral_id"], status, f"Referral {view['referral_id']}", "")
    return Item(view["referral_id"], status, plain.title(view), plain.uk_time(view.get("created_at")), plain.rows(view))


def _audit(ctx: RequestContext, activity: str, description: str) -> None:
    ctx.audit(
        system_event(ctx.audit_context, activity=activity, outcome=0, description=description, recorded=ctx.now())
    )


def _host(ctx: RequestContext) -> str:
    assert ctx.principal is not None
    return ctx.principal.organisation


def _every(fetch: Callable[[int], workflow.Page]) -> list[dict[str, Any]]:
    """Reads a host's feed from the start, page after page: a person's inbox shows all of it."""
    items: list[dict[str, Any]] = []
    since = 0
    while True:
        page = fetch(since)
        items.extend(page.items)
        if not page.more:
            return items
        since = page.last_seq


def _notices(ctx: RequestContext) -> list[Notice]:
    assert ctx.session is not None
    bodies = _every(lambda since: workflow.list_notices(ctx, since=since))
    acks = {
        a.packet_id: a
        for a in ctx.session.exec(
            select(NoticeAcknowledgement)
            .join(Packet, Packet.packet_id == NoticeAcknowledgement.packet_id)  # type: ignore[arg-type]
            .where(Packet.recipient == _host(ctx))
        )
    }
    out = []
    for body in bodies:
        ack = acks.get(body["packet_id"])
        out.append(
            Notice(
                body["packet_id"],
                body["referral_id"],
                body["kind"],
                body.get("reason_text", ""),
                plain.uk_time(body.get("created_at")),
                ack.username if ack else None,
                plain.uk_time(ack.acknowledged) if ack else None,
            )
        )
    return out


def inbox(ctx: RequestContext) -> tuple[list[Item], list[Notice]]:
    """Returns the host's referrals (new ones first, then the most recently changed first) and its notices,
    newest first."""
    with ctx.transaction():
        views = _every(lambda since: workflow.list_packets(ctx, None, since=since))  # in the order they changed
        notices = _notices(ctx)
        _audit(ctx, "inbox-viewed", f"{len(views)} referrals and {len(notices)} notices shown in the inbox")
    items = [_item(v) for v in reversed(views)]
    items.sort(key=lambda i: i.status != "new")  # stable: newest first within each group
    return items, list(reversed(notices))


def referral(ctx: RequestContext, referral_id: str) -> tuple[Item, list[Notice], list[OutcomeRecord]]:
    """Returns one of the host's referrals (404 FhirError for another host's), its notices and outcomes."""
    with ctx.transaction() as session:
        view = workflow.read_packet(ctx, referral_id)
        notices = [n for n in _notices(ctx) if n.referral_id == referral_id]
        outcomes = list(
            session.exec(
                select(OutcomeRecord).where(OutcomeRecord.referral_id == referral_id).order_by(OutcomeRecord.created)  # type: ignore[arg-type]
            )
        )
        _audit(ctx, "inbox-referral-viewed", f"referral {referral_id} shown in the inbox ({view.get('status')})")
    return _item(view), list(reversed(notices)), outcomes


def decline_reason(code: str, detail: str) -> str:
    """Returns the reason text for a decline; raises FhirError 422 naming the field that is wrong."""
    detail = detail.strip()
    if code not in DECLINE_REASONS:
        raise FhirError(422, [Issue("required", "Select why you are declining this referral", "reason")])
    if code == "other" and not detail:
        raise FhirError(422, [Issue("required", "Say why you are declining this referral", "detail")])
    if len(detail) > 400:
        raise FhirError(422, [Issue("value", "The detail must be 400 characters or fewer", "detail")])
    label = DECLINE_REASONS[code]
    if code == "other":
        return detail
    return f"{label}: {detail}" if detail else label


def set_status(ctx: RequestContext, referral_id: str, status: str, reason: str | None = None) -> dict[str, Any]:
    """The API's own status change (validation, Task state machine, audit) for the person's host."""
    with ctx.transaction():
        return workflow.set_status(ctx, referral_id, status, reason)


def acknowledge(ctx: RequestContext, packet_id: str, username: str) -> None:
    """Records that `username` read the host's recall or cease notice; 404 for anyone else's notice."""
    with ctx.transaction() as session:
        notice = session.exec(
            select(Packet).where(
                Packet.packet_id == packet_id,
                Packet.recipient == _host(ctx),
                Packet.kind.in_(NOTICE_KINDS),  # type: ignore[attr-defined]
            )
        ).first()
        if notice is None:
            raise FhirError(404, [Issue("not-found", f"Notice {packet_id} is not addressed to {_host(ctx)}")])
        if session.get(NoticeAcknowledgement, packet_id) is not None:
            return
        session.add(NoticeAcknowledgement(packet_id=packet_id, username=username))
        _audit(ctx, "inbox-notice-acknowledged", f"{notice.kind} notice {packet_id} for {notice.referral_id}")


CSV_COLUMNS = ("referral_id", "received", "referrer", "status", "outcome_submissions", "last_outcome_stage")


def _cell(value: Any) -> str:
    """Text for a spreadsheet cell; a leading = + - @ is quoted so it is never run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_csv(ctx: RequestContext) -> tuple[str, int]:
    """Returns the host's referrals and their statuses as CSV (no personal data) and the row count."""
    host = _host(ctx)
    submissions = (
        select(OutcomeRecord.referral_id, func.count().label("n"), func.max(OutcomeRecord.created).label("last"))
        .group_by(OutcomeRecord.referral_id)  # type: ignore[arg-type]
        .subquery()
    )
    with ctx.transaction() as session:
        rows = session.exec(
            select(Packet.referral_id, Packet.created, Packet.status, Organisation.name, submissions.c.n)
            .join(Referral, Referral.referral_id == Packet.referral_id)  # type: ignore[arg-type]
            .join(Organisation, Organisation.id == Referral.tenant)  # type: ignore[arg-type]
            .outerjoin(submissions, submissions.c.referral_id == Packet.referral_id)
            .where(Packet.recipient == host, Packet.kind == "referral")
            .order_by(Packet.created)  # type: ignore[arg-type]
        ).all()
        stages = {
            r.referral_id: r.stage
            for r in session.exec(
                select(OutcomeRecord)
                .join(Packet, Packet.referral_id == OutcomeRecord.referral_id)  # type: ignore[arg-type]
                .where(Packet.recipient == host, Packet.kind == "referral")
                .order_by(OutcomeRecord.created)  # type: ignore[arg-type]
            )
        }
        _audit(ctx, "inbox-export", f"{len(rows)} referrals exported as CSV")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(CSV_COLUMNS)
    for referral_id, created, status, referrer, count in rows:
        received = utc(created).isoformat(timespec="seconds")
        writer.writerow(
            [_cell(v) for v in (referral_id, received, referrer, status, count or 0, stages.get(referral_id, ""))]
        )
    return out.getvalue(), len(rows)
