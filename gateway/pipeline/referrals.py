"""Referral intake: a validated ServiceRequest (alone or in a BaRS message) becomes a stored
Patient, ServiceRequest, Consents, a Task for the workflow and a Referral record, then is
offered to its addressed VCSE host (see dispatch.py). Everything runs in the caller's
transaction, so a referral is stored whole or not at all.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError

from audit.events import rest_event
from gateway.context import RequestContext
from gateway.models import Referral
from gateway.pipeline import dispatch
from gateway.storage import referrals as referral_store
from gateway.storage import resources
from gateway.storage.guard import race_guard
from gateway.storage.repository import Stored
from gateway.storage.scope import ForTenant
from mappings.referral_records import (
    BundleIndex,
    Links,
    consent_record,
    message_index,
    nhs_identifier,
    parse_instant,
    patient_nhs_of,
    patient_record,
    performer_org,
    referenced_record,
    referenced_resources,
    service_request_record,
    task_record,
)
from mappings.response_message import response_message
from profiles import systems
from profiles.outcomes import FhirError, Issue, conflict, forbidden, not_found, unprocessable
from profiles.referral import ReferralMessage, check_client_update, check_service_request, read_message


def _errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity in ("error", "fatal")]


def new_referral_id() -> str:
    """Returns a pseudonymous referral id: random, so it reveals nothing about the patient or practice."""
    return "SPR-" + secrets.token_hex(8).upper()


def _upsert_patient(
    ctx: RequestContext, tenant: str, nhs: str, source: dict[str, Any] | None, index: BundleIndex, links: Links
) -> Stored:
    """Returns the tenant's one Patient for this NHS number, created or refreshed from `source`.

    The database keeps it one (a unique index): when a concurrent request created the Patient after
    our look-up, our insert fails inside its savepoint and the winner's Patient is used instead.
    """
    assert ctx.session is not None
    repo = ctx.repo(as_gateway=True)
    body = patient_record(source, nhs, index, links)
    current = resources.patient(ctx.session, ForTenant(tenant), nhs)
    if current is None:
        try:
            with race_guard(ctx.session):
                return repo.create(body, tenant=tenant, patient_nhs=nhs)
        except IntegrityError:
            current = resources.patient(ctx.session, ForTenant(tenant), nhs)
            if current is None:
                raise
    if source is None:
        return current
    return repo.update("Patient", current.resource["id"], body)


def _duplicate(error: referral_store.IdentifierTaken) -> FhirError:
    earlier = f" as ServiceRequest/{error.service_request_id}" if error.service_request_id else ""
    return conflict(
        f"A referral with identifier {error.system}|{error.value} was already received{earlier}; "
        "it was not stored again"
    )


def _refuse_duplicate(ctx: RequestContext, tenant: str, sr: dict[str, Any]) -> None:
    """Refuses a referral whose business identifier this organisation has already sent (409, BaRS REC_CONFLICT)."""
    assert ctx.session is not None
    for ident in sr.get("identifier") or []:
        if not ident.get("value"):
            continue
        system, value = str(ident.get("system", "")), str(ident["value"])
        earlier = referral_store.identified(ctx.session, ForTenant(tenant), system, value)
        if earlier is not None:
            raise _duplicate(referral_store.IdentifierTaken(system, value, earlier))


def store_referral(
    ctx: RequestContext,
    sr: dict[str, Any],
    *,
    nhs: str,
    patient_source: dict[str, Any] | None,
    consents: list[dict[str, Any]],
    extras: dict[str, Any],
    bundle_index: dict[str, dict[str, Any]],
) -> tuple[Stored, Stored, Stored, Referral]:
    """Stores one validated referral; returns (ServiceRequest, Patient, Task, Referral)."""
    assert ctx.principal is not None and ctx.session is not None
    tenant = ctx.principal.organisation
    _refuse_duplicate(ctx, tenant, sr)
    repo = ctx.repo(as_gateway=True)
    # Who referred and what supports it: the message resources the referral reaches are stored in the
    # referring tenant under ids chosen first, so that every reference can be rewritten to them.
    roots = [sr, *([patient_source] if patient_source else [])]
    reached, links = referenced_resources(roots, bundle_index, lambda: str(uuid.uuid4()))
    patient = _upsert_patient(ctx, tenant, nhs, patient_source, bundle_index, links)
    patient_ref = {"reference": f"Patient/{patient.resource['id']}", "identifier": nhs_identifier(nhs)}
    for rid, resource in reached:
        record = referenced_record(resource, bundle_index, links, patient_ref)
        repo.create(record, tenant=tenant, patient_nhs=patient_nhs_of(record), resource_id=rid)
    body = service_request_record(sr, patient_ref, bundle_index, links)
    recipient = performer_org(body)
    stored_sr = repo.create(
        body,
        tenant=tenant,
        audience=recipient,
        patient_nhs=nhs,
        date=parse_instant(sr.get("authoredOn")),
    )
    try:  # the database decides between concurrent posts of one referral: the loser answers 409
        referral_store.claim_identifiers(ctx.session, ForTenant(tenant), sr, stored_sr.resource["id"])
    except referral_store.IdentifierTaken as taken:
        raise _duplicate(taken) from None
    for consent in consents:
        store_consent(ctx, consent_record(consent, patient_ref, bundle_index), nhs=nhs)
    referral_id = new_referral_id()
    referral = Referral(
        referral_id=referral_id,
        service_request_id=stored_sr.resource["id"],
        task_id=str(uuid.uuid4()),
        tenant=tenant,
        patient_id=patient.resource["id"],
        patient_nhs=nhs,
        recipient=recipient,
        extras={**extras, "patient": patient_source or {}},
    )
    # A Core INSERT of the record's columns: the object itself is only read from here on, and an
    # ORM add + flush of it cost more than the rest of the referral's inserts together.
    referral_store.insert_referral(ctx.session, ForTenant(tenant), referral)
    ctx.audit(
        rest_event(
            ctx.audit_context,
            interaction="create",
            resource_type="ServiceRequest",
            resource_id=stored_sr.resource["id"],
            outcome=0,
            patient_nhs=nhs,
            description=f"Referral received ({referral_id})",
            recorded=ctx.now(),
        )
    )
    # The consent decision and packet come first, so the Task is written once, in its final state.
    state = dispatch.place(ctx, referral, stored_sr.resource)
    task_body = task_record(
        service_request=stored_sr.resource,
        patient_ref=patient_ref,
        requester=tenant,
        recipient=recipient,
        referral_id=referral_id,
        status=state.status if state else "requested",
        reason=state.reason if state else None,
        business_status=state.business_status if state else None,
        now=ctx.now(),
    )
    task = repo.create(
        task_body, tenant=tenant, audience=recipient, patient_nhs=nhs, date=ctx.now(), resource_id=referral.task_id
    )
    return stored_sr, patient, task, referral


def store_consent(ctx: RequestContext, body: dict[str, Any], *, nhs: str) -> Stored:
    """Stores a Consent already shaped by mappings.referral_records.consent_record."""
    assert ctx.principal is not None
    return ctx.repo(as_gateway=True).create(
        body,
        tenant=ctx.principal.organisation,
        patient_nhs=nhs,
        date=parse_instant(body.get("dateTime")) or ctx.now(),
    )


def _check_sender(ctx: RequestContext, message: ReferralMessage) -> None:
    assert ctx.principal is not None
    if message.sender_ods and message.sender_ods != ctx.principal.organisation:
        raise forbidden(
            f"The message is sent on behalf of {message.sender_ods}, but this client acts for "
            f"{ctx.principal.organisation}"
        )


def _check_requester(ctx: RequestContext, sr: dict[str, Any]) -> None:
    """A plain create may not name another practice as requester (403, as the message route refuses
    another sender): the requester's ODS code, when it gives one, is the caller's organisation."""
    assert ctx.principal is not None
    ident = (sr.get("requester") or {}).get("identifier") or {}
    if ident.get("system") == systems.ODS_CODE and ident.get("value") and ident["value"] != ctx.principal.organisation:
        raise forbidden(
            f"ServiceRequest.requester names {ident['value']}, but this client acts for {ctx.principal.organisation}"
        )


def accept_message(ctx: RequestContext, bundle: dict[str, Any], *, enforce_sender: bool = True) -> dict[str, Any]:
    """Returns the BaRS response message (mappings/response_message.py) for a referral or cancellation
    message: `response.code` ok, focus on the stored or changed ServiceRequest and Task. A refusal is a
    FhirError (an OperationOutcome), never a response message.

    `enforce_sender=False` is for HL7 v2, where the transport (token or MLLP allow-list) names the
    sender and MSH-4 is the sending system's own facility id, not an ODS code.
    """
    message, issues = read_message(bundle)
    if _errors(issues) or message is None:
        raise unprocessable(issues or [Issue("invalid", "The message could not be read as a referral")])
    if enforce_sender:
        _check_sender(ctx, message)
    if message.kind == "cancel":
        changed = cancel_referral(ctx, message.service_request)
        return _response(ctx, bundle, changed)
    extras = {"questionnaire_responses": message.questionnaire_responses, "flags": message.flags}
    sr, patient, task, _ = store_referral(
        ctx,
        message.service_request,
        nhs=message.nhs_number,
        patient_source=message.patient,
        consents=message.consents,
        extras=extras,
        bundle_index=message_index(bundle),
    )
    return _response(ctx, bundle, [sr, task, patient])


def _response(ctx: RequestContext, request: dict[str, Any], items: list[Stored]) -> dict[str, Any]:
    return response_message(
        request=request,
        code="ok",
        resources=[s.resource for s in items],
        base_url=ctx.base_url,
        now=ctx.now(),
    )


def accept_service_request(ctx: RequestContext, sr: dict[str, Any]) -> Stored:
    """Returns the stored ServiceRequest posted on its own (FHIR create)."""
    issues = check_service_request(sr)
    if _errors(issues):
        raise unprocessable(issues)
    _check_requester(ctx, sr)
    nhs = str(((sr.get("subject") or {}).get("identifier") or {}).get("value", ""))
    stored, _, _, _ = store_referral(ctx, sr, nhs=nhs, patient_source=None, consents=[], extras={}, bundle_index={})
    return stored


def cancel_referral(ctx: RequestContext, sr: dict[str, Any]) -> list[Stored]:
    """Revokes a referral this organisation sent, found by its business identifier; recalls any packet."""
    assert ctx.session is not None and ctx.principal is not None
    scope = ForTenant(ctx.principal.organisation)
    found = None
    for ident in sr.get("identifier") or []:
        found = referral_store.identified(ctx.session, scope, str(ident.get("system", "")), str(ident.get("value", "")))
        if found:
            break
    if not found:
        raise not_found("The cancellation names a referral (ServiceRequest.identifier) this gateway does not hold")
    current = ctx.repo().read("ServiceRequest", found)
    status = sr.get("status", "revoked")
    return revoke(ctx, current, status)


def update_service_request(
    ctx: RequestContext, resource_id: str, proposed: dict[str, Any], *, if_match: int | None
) -> Stored:
    """Returns the cancelled referral after a referrer's PUT (only cancellation is allowed: the profile says)."""
    current = ctx.repo().read("ServiceRequest", resource_id)
    if if_match is not None and if_match != current.version_id:
        # A stale If-Match is a failed precondition (412), whatever the referral's state (R4 §3.1.0.5.1).
        raise FhirError(
            412,
            [Issue("conflict", f"If-Match names version {if_match} but the current version is {current.version_id}")],
        )
    issues = check_client_update(current.resource, proposed)
    if issues:
        raise unprocessable(issues)
    return revoke(ctx, current, proposed["status"], if_match=if_match)[0]


def revoke(ctx: RequestContext, current: Stored, status: str, *, if_match: int | None = None) -> list[Stored]:
    if current.resource.get("status") in ("revoked", "entered-in-error", "completed"):
        raise FhirError(
            409,
            [
                Issue(
                    "business-rule",
                    f"The referral is already {current.resource['status']}",
                    "ServiceRequest.status",
                )
            ],
        )
    repo = ctx.repo(as_gateway=True)
    updated = repo.update(
        "ServiceRequest", current.resource["id"], {**current.resource, "status": status}, if_match=if_match
    )
    ctx.audit(
        rest_event(
            ctx.audit_context,
            interaction="update",
            resource_type="ServiceRequest",
            resource_id=current.resource["id"],
            outcome=0,
            patient_nhs=patient_nhs_of(current.resource),
            description=f"Referral cancelled by the referrer (status {status})",
            recorded=ctx.now(),
        )
    )
    task = dispatch.recall(
        ctx, current.tenant, current.resource["id"], reason=f"The referrer cancelled the referral ({status})"
    )
    return [updated, *([task] if task else [])]
