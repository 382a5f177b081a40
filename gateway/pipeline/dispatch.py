"""From a stored referral to the VCSE host: the consent decision, the minimal packet, the Task,
and the outbox rows that carry packets, recall notices and cease notices to webhook hosts.

Rules live elsewhere (consent.policy decides, mappings.packet builds); this module applies
them in order and records each step in the audit, all in the caller's transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session

from audit.events import consent_decision_event
from consent.categories import ALL_CATEGORIES, SOCIAL_PRESCRIBING_PURPOSE
from consent.policy import Decision, decide
from gateway.context import RequestContext
from gateway.inbox import notify as inbox_notify
from gateway.models import Organisation, Packet, Referral, now_utc
from gateway.storage import consents, outbox, packets, referrals
from gateway.storage.feed import touch
from gateway.storage.repository import Stored, execute
from gateway.storage.scope import ForTenant
from mappings.packet import build_packet, notice_packet
from mappings.task_status import settled_business_status

ACTIVE_PACKET_STATES = ("new", "accepted", "on-hold", "in-progress")
# Every state in which the host holds the packet's content (it was offered, whatever it did since):
# a withdrawal of consent reaches all of them (a cease notice), finished referrals included.
DISCLOSED_PACKET_STATES = (*ACTIVE_PACKET_STATES, "declined", "completed")
# Task states FHIR's state machine lets nothing follow: a cease leaves them as they are.
FINAL_TASK_STATES = ("completed", "cancelled", "rejected", "failed", "entered-in-error")
# Core statements for the per-referral path (no ORM objects to build and flush).
_ORG_TABLE = Organisation.__table__  # type: ignore[attr-defined]
_ORGANISATIONS = sa_select(_ORG_TABLE).where(_ORG_TABLE.c.id.in_(bindparam("ids", expanding=True)))


def new_packet_id() -> str:
    return "PKT-" + secrets.token_hex(10).upper()


def consents_for(session: Session, tenant: str, nhs: str) -> list[dict[str, Any]]:
    """Returns every Consent on record for this patient at this organisation (filtered in SQL)."""
    return consents.of_patient(session, ForTenant(tenant), nhs)


def current_decision(session: Session, referral: Referral, recipient: str, now: datetime) -> Decision:
    """Returns the consent decision for sending this referral to `recipient` at `now`."""
    return decide(
        consents_for(session, referral.tenant, referral.patient_nhs),
        recipient=recipient,
        purpose=SOCIAL_PRESCRIBING_PURPOSE,
        categories=ALL_CATEGORIES,
        now=now,
    )


def task_of(ctx: RequestContext, referral: Referral) -> Stored:
    return ctx.repo(as_gateway=True).read("Task", referral.task_id)


def update_task(
    ctx: RequestContext,
    referral: Referral,
    *,
    status: str | None = None,
    reason: str | None = None,
    business_status: str | None = None,
) -> Stored:
    """Returns the Task after setting its status, statusReason and businessStatus (FHIR Task state machine)."""
    current = task_of(ctx, referral)
    task = dict(current.resource)
    if status:
        task["status"] = status
    if reason:
        task["statusReason"] = {"text": reason}
    elif status:
        task.pop("statusReason", None)
    if business_status:
        task["businessStatus"] = {"text": business_status}
    elif status and status != current.resource.get("status"):
        task["businessStatus"] = {"text": settled_business_status(status, reason)}
    task["lastModified"] = ctx.now().isoformat(timespec="seconds")
    return ctx.repo(as_gateway=True).update("Task", referral.task_id, task)


def _enqueue(
    ctx: RequestContext,
    referral: Referral,
    org: Organisation | Row[Any],
    kind: str,
    body: dict[str, Any],
    dedup_key: str,
) -> None:
    """Writes an outbox row for a webhook host (pull-only hosts fetch from the VCSE API instead)."""
    if org.delivery_mode != "webhook" or not org.webhook_url:
        return
    assert ctx.session is not None
    outbox.enqueue(
        ctx.session,
        ForTenant(referral.tenant),
        kind=kind,
        target=org.id,
        dedup_key=dedup_key,
        body=orjson.dumps(body).decode(),
    )


def decide_for(ctx: RequestContext, referral: Referral, recipient: str) -> Decision:
    """Returns the consent decision for sending this referral to `recipient` now, and audits it."""
    assert ctx.session is not None
    decision = current_decision(ctx.session, referral, recipient, ctx.now())
    ctx.audit(
        consent_decision_event(
            ctx.audit_context,
            recipient_org=recipient,
            patient_nhs=referral.patient_nhs,
            decision="permit" if decision.permit else "deny",
            consent_ref=f"Consent/{decision.consent_id}" if decision.consent_id else None,
            categories=sorted(decision.categories),
            reason=decision.reason,
            recorded=ctx.now(),
        )
    )
    return decision


@dataclass(frozen=True)
class TaskState:
    """Where an offer leaves the referral's Task (FHIR Task.status, statusReason, businessStatus)."""

    status: str
    reason: str | None = None
    business_status: str | None = None


def place(ctx: RequestContext, referral: Referral, service_request: dict[str, Any] | None = None) -> TaskState | None:
    """Offers the referral to its addressed host if consent permits (packet + outbox row);
    returns the Task state that results, or None when a packet was made before.

    `service_request` is given for a referral being stored right now (it has no packet yet).
    """
    assert ctx.session is not None
    recipient = referral.recipient
    if not recipient:
        return TaskState("requested", business_status="awaiting a recipient: ServiceRequest.performer is empty")
    # The host and the referrer in one look-up (the referrer's name goes into the packet).
    orgs = {row.id: row for row in execute(ctx.session, _ORGANISATIONS, {"ids": [recipient, referral.tenant]})}
    org = orgs.get(recipient)
    if org is None or org.kind != "vcse" or not org.active:
        return TaskState("on-hold", reason=f"{recipient} is not a registered, active VCSE host on this gateway")
    if service_request is None and packets.of_referral(ctx.session, ForTenant(referral.tenant), referral.referral_id):
        return None
    decision = decide_for(ctx, referral, recipient)
    if not decision.permit:
        return TaskState("on-hold", f"Not sent to {recipient}: {decision.reason}", "awaiting consent")
    repo = ctx.repo(as_gateway=True)
    referrer = orgs.get(referral.tenant)
    packet_id = new_packet_id()
    built = build_packet(
        referral=service_request or repo.read("ServiceRequest", referral.service_request_id).resource,
        patient=referral.extras.get("patient") or repo.read("Patient", referral.patient_id).resource,
        extras=referral.extras,
        decision=decision,
        allowed_fields=org.allowed_fields,
        referral_id=referral.referral_id,
        packet_id=packet_id,
        recipient=recipient,
        referrer={"organisation": referral.tenant, "name": referrer.name if referrer is not None else None},
        created_at=ctx.now(),
    )
    packets.insert_packet(
        ctx.session,
        ForTenant(referral.tenant),
        referral,
        {
            "packet_id": packet_id,
            "referral_id": referral.referral_id,
            "recipient": recipient,
            "kind": "referral",
            "status": "new",
            "body": built.body,
            "fields": built.fields,
            "consent_id": decision.consent_id,
            "created": now_utc(),
            "seq": 0,
        },
    )
    touch(ctx.session, packet_id, recipient)
    _enqueue(ctx, referral, org, "referral", built.body, packet_id)
    inbox_notify.queue(ctx, org.id, org.name, packet_id)  # "a referral has arrived", when the host asked
    return TaskState("requested", business_status=f"offered to {recipient}")


def offer(ctx: RequestContext, referral: Referral) -> Stored | None:
    """Offers an already stored referral again (e.g. after new consent); returns the updated Task, if any."""
    state = place(ctx, referral)
    if state is None:
        return None
    return update_task(ctx, referral, status=state.status, reason=state.reason, business_status=state.business_status)


def _notify(ctx: RequestContext, referral: Referral, packet: Packet, kind: str, reason: str, new_status: str) -> None:
    """Marks an issued packet recalled/ceased and queues the notice for its host."""
    assert ctx.session is not None
    notice_id = new_packet_id()
    body = notice_packet(
        kind,  # type: ignore[arg-type]
        referral_id=packet.referral_id,
        packet_id=notice_id,
        recipient=packet.recipient,
        reason=reason,
        created_at=ctx.now(),
    )
    packet.status = new_status
    touch(ctx.session, packet.packet_id, packet.recipient)
    ctx.session.add(packet)
    packets.insert_packet(
        ctx.session,
        ForTenant(referral.tenant),
        referral,
        {
            "packet_id": notice_id,
            "referral_id": packet.referral_id,
            "recipient": packet.recipient,
            "kind": kind,
            "status": "new",
            "body": body,
            "fields": [],
            "consent_id": None,
            "created": now_utc(),
        },
    )
    touch(ctx.session, notice_id, packet.recipient)
    org = ctx.session.get(Organisation, packet.recipient)
    if org is not None:
        _enqueue(ctx, referral, org, kind, body, notice_id)


def recall(ctx: RequestContext, tenant: str, service_request_id: str, *, reason: str) -> Stored | None:
    """Cancels the Task of a revoked referral and sends its host a recall notice; returns the Task."""
    assert ctx.session is not None
    referral = referrals.by_service_request(ctx.session, ForTenant(tenant), service_request_id)
    if referral is None:
        return None
    status = ctx.repo(as_gateway=True).read("ServiceRequest", service_request_id).resource.get("status", "revoked")
    code = "entered-in-error" if status == "entered-in-error" else "revoked"
    for packet in _packets(ctx, referral, ACTIVE_PACKET_STATES):
        _notify(ctx, referral, packet, "recall", code, "recalled")
    return update_task(ctx, referral, status="cancelled", reason=reason)


def _packets(ctx: RequestContext, referral: Referral, states: tuple[str, ...]) -> list[Packet]:
    assert ctx.session is not None
    return packets.of_referral(ctx.session, ForTenant(referral.tenant), referral.referral_id, statuses=states)


def reconsider_patient(ctx: RequestContext, tenant: str, nhs: str) -> None:
    """After a Consent changes: send cease notices where permission ended, offer referrals now permitted.

    Only this tenant's referrals and Consents take part (filtered in SQL): another practice's Consents
    for the same person neither end nor grant anything here. A withdrawal reaches every packet the host
    still holds, finished referrals included: the host holding the person's data is told.
    """
    assert ctx.session is not None
    for referral in referrals.of_patient(ctx.session, ForTenant(tenant), nhs):
        held = _packets(ctx, referral, DISCLOSED_PACKET_STATES)
        if held:
            assert referral.recipient is not None
            decision = decide_for(ctx, referral, referral.recipient)
            if not decision.permit:
                reason = "consent-expired" if decision.lapsed else "consent-withdrawn"
                for packet in held:
                    _notify(ctx, referral, packet, "cease", reason, "ceased")
                if task_of(ctx, referral).resource.get("status") not in FINAL_TASK_STATES:
                    update_task(ctx, referral, status="cancelled", reason=f"Consent ended: {decision.reason}")
        elif task_of(ctx, referral).resource.get("status") == "on-hold":
            offer(ctx, referral)
