"""The VCSE host's side of a referral: reading its packets (each read is a disclosure, re-checked
against consent at that moment) and moving the referral's Task through its states."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from audit.canonical import canonical_json
from audit.events import disclosure_event, rest_event
from gateway.context import RequestContext
from gateway.models import Organisation, Packet, Referral, utc
from gateway.pipeline import dispatch
from gateway.storage import feed, packets
from mappings.packet import restrict
from mappings.task_status import CLOSED_PACKETS, task_transition
from profiles.outcomes import FhirError, Issue, not_found

LIST_STATUSES = ("new", "accepted", "declined", "on-hold", "in-progress", "completed", "recalled", "ceased")


@dataclass(frozen=True)
class HostReferral:
    packet: Packet
    referral: Referral


def owned(ctx: RequestContext, referral_id: str) -> HostReferral:
    """Returns the caller's referral packet; 404 for one addressed to someone else (ids cannot be probed)."""
    assert ctx.session is not None and ctx.principal is not None
    row = packets.owned(ctx.session, ctx.principal, referral_id)
    if row is None:
        raise not_found(f"Referral {referral_id} is not addressed to {ctx.principal.organisation}")
    return HostReferral(row[0], row[1])


def _disclose(ctx: RequestContext, item: HostReferral) -> dict[str, Any]:
    """Returns what the host may see of a packet now: its content if consent still permits, else its status.

    The first read of a version (the exact content now allowed) is audited as a disclosure, after an audited
    consent decision; a later read of the same version as re-access, so polling does not multiply
    disclosures in the IG report. Consent is still checked on every read."""
    packet, referral = item.packet, item.referral
    view: dict[str, Any] = {"referral_id": packet.referral_id, "packet_id": packet.packet_id, "status": packet.status}
    if packet.status in ("recalled", "ceased"):
        return view
    assert ctx.session is not None
    decision = dispatch.current_decision(ctx.session, referral, packet.recipient, ctx.now())
    org = ctx.session.get(Organisation, packet.recipient)
    # Consent or the agreement may have narrowed since the packet was built: disclose only what may go now.
    now_allowed = restrict(
        packet.body, categories=decision.categories, allowed_fields=org.allowed_fields if org else ()
    )
    version = hashlib.sha256(canonical_json(now_allowed.body)).hexdigest()
    consent_ref = f"Consent/{decision.consent_id}" if decision.consent_id else None
    if decision.permit and version == packet.disclosed_sha256:
        ctx.audit(_reaccess_event(ctx, item, consent_ref))
        return {**now_allowed.body, "status": packet.status}
    decision = dispatch.decide_for(ctx, referral, packet.recipient)  # the audited decision before a disclosure
    if not decision.permit:
        dispatch.reconsider_patient(ctx, referral.tenant, referral.patient_nhs)
        view["status"] = "ceased"
        return view
    ctx.audit(
        disclosure_event(
            ctx.audit_context,
            recipient_org=packet.recipient,
            patient_nhs=referral.patient_nhs,
            referral_ref=f"ServiceRequest/{referral.service_request_id}",
            packet_id=packet.packet_id,
            fields=now_allowed.fields,
            consent_ref=consent_ref,
            outcome=0,
            recorded=ctx.now(),
        )
    )
    packet.disclosed_sha256 = version
    ctx.session.add(packet)
    return {**now_allowed.body, "status": packet.status}


def _reaccess_event(ctx: RequestContext, item: HostReferral, consent_ref: str | None) -> dict[str, Any]:
    """A BALP read of a packet version already disclosed to this host: the host's own copy, read again."""
    return rest_event(
        ctx.audit_context,
        interaction="read",
        resource_type="ServiceRequest",
        resource_id=item.referral.service_request_id,
        outcome=0,
        patient_nhs=item.referral.patient_nhs,
        description=f"re-access by {item.packet.recipient} of packet {item.packet.packet_id}, a version already "
        f"disclosed to it (basis {consent_ref or 'none recorded'})",
        recorded=ctx.now(),
    )


@dataclass(frozen=True)
class Page:
    """One page of a host's feed: the items, the feed number to resume after, and whether more are waiting."""

    items: list[dict[str, Any]]
    last_seq: int
    more: bool


def list_packets(ctx: RequestContext, status: str | None, *, since: int = 0, limit: int = 500) -> Page:
    """Returns the caller's referral packets changed after feed number `since` (0: all), in feed order."""
    assert ctx.session is not None and ctx.principal is not None
    if status is not None and status not in LIST_STATUSES:
        raise FhirError(400, [Issue("value", f"status must be one of {', '.join(LIST_STATUSES)}", "status")])
    rows = packets.listed(ctx.session, ctx.principal, status, since=since, limit=limit + 1)
    page = rows[:limit]
    last = page[-1][0].seq if page else since
    return Page([_disclose(ctx, HostReferral(p, r)) for p, r in page], last, len(rows) > limit)


def read_packet(ctx: RequestContext, referral_id: str) -> dict[str, Any]:
    return _disclose(ctx, owned(ctx, referral_id))


def list_notices(ctx: RequestContext, *, since: int = 0, limit: int = 500) -> Page:
    """Returns the recall and cease notices addressed to the caller after `since` (they carry no personal data)."""
    assert ctx.session is not None and ctx.principal is not None
    rows = packets.notices(ctx.session, ctx.principal, since=since, limit=limit + 1)
    page = rows[:limit]
    return Page([p.body for p in page], page[-1].seq if page else since, len(rows) > limit)


def still_permitted(ctx: RequestContext, item: HostReferral) -> None:
    """Refuses (409) a host's change to a referral that was recalled or ceased, or whose consent no longer
    permits it (it expired without a change on record: the next read of the packet, or the worker,
    ceases it and queues the notice; a refusal here rolls back, so it does not try)."""
    packet, referral = item.packet, item.referral
    if packet.status in CLOSED_PACKETS:
        raise FhirError(409, [Issue("business-rule", f"The referral was {packet.status}; it cannot change", "status")])
    assert ctx.session is not None
    decision = dispatch.current_decision(ctx.session, referral, packet.recipient, ctx.now())
    if not decision.permit:
        raise FhirError(
            409, [Issue("business-rule", f"Consent no longer permits this referral with this host: {decision.reason}")]
        )


def acknowledge(ctx: RequestContext, referral_id: str) -> dict[str, Any]:
    """Records that the host has the packet; a Task still `requested` becomes `received` (FHIR R4 Task: a
    potential performer has it and is deciding). Repeating it changes nothing and answers the same."""
    assert ctx.session is not None
    item = owned(ctx, referral_id)
    task_status = dispatch.task_of(ctx, item.referral).resource.get("status")
    if item.packet.acknowledged_at is None:
        item.packet.acknowledged_at = ctx.now()
        ctx.session.add(item.packet)
        if task_status == "requested" and item.packet.status == "new":
            dispatch.update_task(
                ctx, item.referral, status="received", business_status=f"received by {item.packet.recipient}"
            )
            task_status = "received"
        ctx.audit(
            rest_event(
                ctx.audit_context,
                interaction="update",
                resource_type="Task",
                resource_id=item.referral.task_id,
                outcome=0,
                patient_nhs=item.referral.patient_nhs,
                description=f"VCSE host acknowledged packet {item.packet.packet_id}",
                recorded=ctx.now(),
            )
        )
    acknowledged = utc(item.packet.acknowledged_at)
    assert acknowledged is not None
    return {
        "referral_id": referral_id,
        "status": item.packet.status,
        "task_status": task_status,
        "acknowledged_at": acknowledged.isoformat(timespec="seconds"),
    }


def set_status(ctx: RequestContext, referral_id: str, status: str, reason: str | None) -> dict[str, Any]:
    """Moves the referral's Task (and the packet's status); returns the packet's new status view."""
    assert ctx.session is not None
    item = owned(ctx, referral_id)
    still_permitted(ctx, item)
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
    feed.touch(ctx.session, item.packet.packet_id, item.packet.recipient)
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
