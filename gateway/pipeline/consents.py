"""Consent records arriving on their own: store them, then let the decision run again for the
patient's referrals (a new permit releases a referral waiting for consent; a withdrawal sends
cease notices). The policy itself lives in consent.policy."""

from __future__ import annotations

from typing import Any

from audit.events import rest_event
from gateway.context import RequestContext
from gateway.pipeline import dispatch
from gateway.pipeline.referrals import store_consent
from gateway.storage import resources
from gateway.storage.repository import Stored
from gateway.storage.scope import ForTenant
from mappings.referral_records import consent_record, nhs_identifier, parse_instant
from profiles import systems
from profiles.consent_profile import check_consent
from profiles.outcomes import Issue, unprocessable


def _nhs(consent: dict[str, Any]) -> str:
    ident = (consent.get("patient") or {}).get("identifier") or {}
    if ident.get("system") != systems.NHS_NUMBER or not ident.get("value"):
        raise unprocessable(
            [
                Issue(
                    "required",
                    "Consent.patient must carry the patient's NHS number as its identifier",
                    "Consent.patient.identifier",
                )
            ]
        )
    return str(ident["value"])


def _check(consent: dict[str, Any]) -> str:
    issues = [i for i in check_consent(consent) if i.severity in ("error", "fatal")]
    if issues:
        raise unprocessable(issues)
    return _nhs(consent)


def _patient_ref(ctx: RequestContext, nhs: str) -> dict[str, Any]:
    """Returns the Consent's patient: by NHS number, and by id when the caller's tenant holds the Patient."""
    assert ctx.session is not None and ctx.principal is not None
    ref: dict[str, Any] = {"identifier": nhs_identifier(nhs)}
    patient = resources.patient(ctx.session, ForTenant(ctx.principal.organisation), nhs)
    if patient is not None:
        ref["reference"] = f"Patient/{patient.resource['id']}"
    return ref


def _audit(ctx: RequestContext, interaction: str, stored: Stored, nhs: str) -> None:
    ctx.audit(
        rest_event(
            ctx.audit_context,
            interaction=interaction,
            resource_type="Consent",
            resource_id=stored.resource["id"],
            outcome=0,
            patient_nhs=nhs,
            description=f"Consent {interaction}d (status {stored.resource.get('status')})",
            recorded=ctx.now(),
        )
    )


def create(ctx: RequestContext, consent: dict[str, Any]) -> Stored:
    """Returns the stored Consent, after re-deciding the patient's referrals."""
    assert ctx.principal is not None
    nhs = _check(consent)
    stored = store_consent(ctx, consent_record(consent, _patient_ref(ctx, nhs), {}), nhs=nhs)
    _audit(ctx, "create", stored, nhs)
    dispatch.reconsider_patient(ctx, ctx.principal.organisation, nhs)
    return stored


def update(ctx: RequestContext, consent_id: str, consent: dict[str, Any], *, if_match: int | None) -> Stored:
    """Returns the new version of a Consent (e.g. status inactive: withdrawal), after re-deciding."""
    current = ctx.repo().read("Consent", consent_id)
    nhs = _check(consent)
    if nhs != _nhs(current.resource):
        raise unprocessable(
            [
                Issue(
                    "business-rule",
                    "A Consent cannot be moved to another patient",
                    "Consent.patient.identifier",
                )
            ]
        )
    body = {k: v for k, v in consent.items() if k != "meta"}
    body["patient"] = current.resource.get("patient")
    stored = ctx.repo(as_gateway=True).update(
        "Consent", consent_id, body, if_match=if_match, date=parse_instant(consent.get("dateTime"))
    )
    _audit(ctx, "update", stored, nhs)
    dispatch.reconsider_patient(ctx, current.tenant, nhs)
    return stored
