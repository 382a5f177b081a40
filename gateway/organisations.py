"""Organisations and their data-sharing agreements (service functions used by the admin API and CLI)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlmodel import Session, select

from gateway.delivery.signing import new_secret as new_secret_value
from gateway.endpoints import check_url
from gateway.models import Organisation
from mappings.packet import ALL_FIELDS, DEFAULT_ALLOWED_FIELDS
from profiles import systems

KINDS = ("gp-practice", "referrer", "vcse", "icb")


def check_agreement(fields: Collection[str]) -> list[str]:
    """Returns the allow-list sorted; raises ValueError naming any field the packet does not have."""
    unknown = sorted(set(fields) - set(ALL_FIELDS))
    if unknown:
        raise ValueError(f"unknown packet fields: {', '.join(unknown)}; known: {', '.join(ALL_FIELDS)}")
    return sorted(set(fields))


def upsert_organisation(
    session: Session,
    *,
    org_id: str,
    name: str,
    kind: str,
    delivery_mode: str = "pull",
    webhook_url: str | None = None,
    fhir_endpoint: str | None = None,
    allowed_fields: Collection[str] | None = None,
    identifier_system: str = systems.ODS_CODE,
    allow_insecure_endpoints: bool = False,
) -> tuple[Organisation, str | None]:
    """Returns the organisation and, when a webhook secret was created, that secret (shown once).
    Raises ValueError for a bad kind or mode, or an endpoint URL the SSRF rule refuses (gateway/endpoints)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if delivery_mode not in ("pull", "webhook"):
        raise ValueError("delivery_mode must be pull or webhook")
    if delivery_mode == "webhook" and not webhook_url:
        raise ValueError("a webhook host needs webhook_url")
    for label, url in (("webhook_url", webhook_url), ("fhir_endpoint", fhir_endpoint)):
        if url:
            try:
                check_url(url, allow_insecure=allow_insecure_endpoints)
            except ValueError as exc:
                raise ValueError(f"{label} {exc}") from None
    org = session.get(Organisation, org_id) or Organisation(
        id=org_id, name=name, kind=kind, identifier_system=identifier_system
    )
    org.name, org.kind, org.identifier_system = name, kind, identifier_system
    org.delivery_mode, org.webhook_url, org.fhir_endpoint = delivery_mode, webhook_url, fhir_endpoint
    org.allowed_fields = check_agreement(
        allowed_fields if allowed_fields is not None else (DEFAULT_ALLOWED_FIELDS if kind == "vcse" else ())
    )
    new_secret = None
    if delivery_mode == "webhook" and not org.webhook_secret:
        new_secret = org.webhook_secret = new_secret_value()
    session.add(org)
    session.flush()
    return org, new_secret


def endpoints_of(org: Organisation | None) -> dict[str, str | None]:
    """Returns the organisation's outbound URLs (to compare before and after a change)."""
    return {
        "webhook_url": org.webhook_url if org else None,
        "fhir_endpoint": org.fhir_endpoint if org else None,
    }


def endpoint_changes(before: dict[str, str | None], org: Organisation) -> str:
    """Returns "; webhook_url <old> -> <new>" for each URL that changed (for the audit record), else ""."""
    after = endpoints_of(org)
    return "".join(
        f"; {name} {before[name] or 'none'} -> {after[name] or 'none'}" for name in after if before[name] != after[name]
    )


def fields_needing_ig_approval(current: Collection[str], requested: Collection[str]) -> list[str]:
    """Returns the fields a change would add beyond both the current agreement and the IG default set
    (NHS number, date of birth, address, gender, free text): widening to them is the IG officer's call."""
    return sorted(set(requested) - set(current) - DEFAULT_ALLOWED_FIELDS)


def request_agreement(session: Session, org: Organisation, requested: list[str], requested_by: str | None) -> None:
    """Parks a widening for IG approval: the agreement keeps what it had (plus any non-identifying
    additions already applied by the caller) until `approve_agreement`."""
    org.pending_allowed_fields = check_agreement(requested)
    org.pending_requested_by = requested_by
    session.add(org)
    session.flush()


def approve_agreement(session: Session, org_id: str) -> Organisation:
    """Applies the pending widening of an organisation's agreement; LookupError when none waits."""
    org = session.get(Organisation, org_id)
    if org is None or org.pending_allowed_fields is None:
        raise LookupError(f"organisation {org_id} has no agreement change waiting for approval")
    org.allowed_fields = check_agreement(org.pending_allowed_fields)
    org.pending_allowed_fields, org.pending_requested_by = None, None
    session.add(org)
    session.flush()
    return org


def rotate_webhook_secret(session: Session, org_id: str) -> str:
    """Returns a new webhook signing secret for a webhook host (the old one stops verifying at once)."""
    org = session.get(Organisation, org_id)
    if org is None:
        raise LookupError(f"organisation {org_id} is not registered")
    if org.delivery_mode != "webhook":
        raise ValueError(f"{org_id} is not a webhook host, so it has no webhook secret")
    org.webhook_secret = new_secret_value()
    session.add(org)
    session.flush()
    return org.webhook_secret


def public_view(org: Organisation) -> dict[str, Any]:
    """Returns what the admin API shows of an organisation (never its webhook secret)."""
    return {
        "id": org.id,
        "name": org.name,
        "kind": org.kind,
        "identifier_system": org.identifier_system,
        "delivery_mode": org.delivery_mode,
        "webhook_url": org.webhook_url,
        "fhir_endpoint": org.fhir_endpoint,
        "data_sharing_agreement": {"allowed_fields": org.allowed_fields},
        **(
            {"pending_agreement": {"allowed_fields": org.pending_allowed_fields, "needs": "ig-officer approval"}}
            if org.pending_allowed_fields is not None
            else {}
        ),
        "active": org.active,
    }


def list_organisations(session: Session) -> list[Organisation]:
    return list(session.exec(select(Organisation).order_by(Organisation.id)))
