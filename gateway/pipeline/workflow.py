"""The VCSE host's side of a referral: reading its packets (each read is a disclosure, re-checked
against consent at that moment) and moving the referral's Task through its states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import select

from audit.events import disclosure_event, rest_event
from gateway.context import RequestContext
from gateway.models import Organisation, Packet, Referral
from gateway.pipeline import dispatch
from mappings.packet import restrict
from mappings.task_status import task_transition
from profiles.outcomes import FhirError, Issue, not_found

LIST_STATUSES = ("new", "accepted", "declined", "on-hold", "in-progress", "completed", "recalled", "ceased")


@dataclass(frozen=True)
class HostReferral:
    packet: Packet
    referral: Referral


def owned(ctx: RequestContext, referral_id: str) -> HostReferral:
    """Returns the caller's referral packet; 404 for one addressed to someone else (ids cannot be probed)."""
    assert ctx.session is not None and ctx.principal is not None
    row = ctx.session.exec(
        select(Packet, Referral)
        .join(Referral, Referral.referral_id == Packet.referral_id)
        .where(
            Packet.referral_id == referral_id,
            Packet.kind == "referral",
            Packet.recipient == ctx.principal.organisation,
        )
    ).first()
    if row is None:
        raise not_found(f"Referral {referral_id} is not addressed to {ctx.principal.organisation}")
    return HostReferral(row[0], row[1])


def _disclose(ctx: RequestContext, item: HostReferral) -> dict[str, Any]:
    """Returns what the host may see of a packet now: its content if consent still permits, else its status."""
    packet, referral = item.packet, item.referral
    view: dict[str, Any] = {"referral_id": packet.referral_id, "packet_id": packet.packet_id, "status": packet.status}
    if packet.status in ("recalled", "ceased"):
        return view
    decision = dispatch.decide_for(ctx, referral, packet.recipient)
    if not decision.permit:
        dispatch.reconsider_patient(ctx, referral.tenant, referral.patient_nhs)
        view["status"] = "ceased"
        return view
    assert ctx.session is not None
    org = ctx.session.get(Organisation, packet.recipient)
    # Consent or the agreement may have narrowed since the packet was built: disclose only what may go now.
    now_allowed = restrict(
        packet.body, categories=decision.categories, allowed_fields=org.allowed_fields if org else ()
    )
    ctx.audit(
        disclosure_event(
            ctx.audit_context,
            recipient_org=packet.recipient,
            patient_nhs=referral.patient_nhs,
            referral_ref=f"ServiceRequest/{referral.service_request_id}",
            packet_id=packet.packet_id,
            fields=now_allowed.fields,
            consent_ref=f"Consent/{decision.consent_id}" if decision.consent_id else None,
            outcome=0,
            recorded=ctx.now(),
        )
    )
    return {**now_allowed.body, "status": packet.status}


def list_packets(ctx: RequestContext, status: str | None) -> list[dict[str, Any]]:
    """Returns the caller's referral packets (all live ones, or those in one status)."""
    assert ctx.session is not None and ctx.principal is not None
    if status is not None and status not in LIST_STATUSES:
        raise FhirError(400, [Issue("value", f"status must be one of {', '.join(LIST_STATUSES)}", "status")])
    query = (
        select(Packet, Referral)
        .join(Referral, Referral.referral_id == Packet.referral_id)
        .where(Packet.kind == "referral", Packet.recipient == ctx.principal.organisation)
        .order_by(Packet.created)  # type: ignore[arg-type]
    )
    if status is not None:
        query = query.where(Packet.status == status)
    return [_disclose(ctx, HostReferral(p, r)) for p, r in ctx.session.exec(query)]


def read_packet(ctx: RequestContext, referral_id: str) -> dict[str, Any]:
    return _disclose(ctx, owned(ctx, referral_id))


def list_notices(ctx: RequestContext) -> list[dict[str, Any]]:
    """Returns the recall and cease notices addressed to the caller (they carry no personal data)."""
    assert ctx.session is not None and ctx.principal is not None
    rows = ctx.session.exec(
        select(Packet)
        .where(Packet.recipient == ctx.principal.organisation, Packet.kind.in_(("recall", "cease")))  # type: ignore[attr-defined]
        .order_by(Packet.created)  # type: ignore[arg-type]
    )
    return [p.body for p in rows]


def set_status(ctx: RequestContext, referral_id: str, status: str, reason: str | None) -> dict[str, Any]:
    """Moves the referral's Task (and the packet's status); returns the packet's new status view."""
    assert ctx.session is not None
    item = owned(ctx, referral_id)
    current = dispatch.task_of(ctx, item.referral).resource.get("status")
    task_status = task_transition(status, reason=reason, packet_status=item.packet.status, task_status=current)
    if task_status is None:
        return {"referral_id": referral_id, "status": item.packet.status, "task_status": current}
    dispatch.update_task(
        ctx,
        item.referral,
        status=task_status,
        reason=reason if status == "declined" else None,
        business_status=f"{status} by {item.packet.recipient}",
    )
    item.packet.status = status
    ctx.session.add(item.packet)
    if status == "completed":
        _complete_service_request(ctx, item.referral)
    ctx.audit(
        rest_event(
            ctx.audit_context,
            interaction="update",
            resource_type="Task",
            resource_id=item.referral.task_id,
            outcome=0,
            patient_nhs=item.referral.patient_nhs,
            description=f"VCSE host set the referral {status}" + (f": {reason}" if reason else ""),
            recorded=ctx.now(),
        )
    )
    return {"referral_id": referral_id, "status": status, "task_status": task_status}


def _complete_service_request(ctx: RequestContext, referral: Referral) -> None:
    """When the Task completes, so does the ServiceRequest (FHIR workflow: the request is fulfilled)."""
    repo = ctx.repo(as_gateway=True)
    sr = repo.read("ServiceRequest", referral.service_request_id).resource
    if sr.get("status") == "active":
        repo.update("ServiceRequest", referral.service_request_id, {**sr, "status": "completed"})
