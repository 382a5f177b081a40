"""Organisations and their data-sharing agreements (service functions used by the admin API and CLI)."""

from __future__ import annotations

import secrets
from collections.abc import Collection
from typing import Any

from sqlmodel import Session, select

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
) -> tuple[Organisation, str | None]:
    """Returns the organisation and, when a webhook secret was created, that secret (shown once)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if delivery_mode not in ("pull", "webhook"):
        raise ValueError("delivery_mode must be pull or webhook")
    if delivery_mode == "webhook" and not webhook_url:
        raise ValueError("a webhook host needs webhook_url")
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
        new_secret = org.webhook_secret = "whsec_" + secrets.token_urlsafe(32)
    session.add(org)
    session.flush()
    return org, new_secret


def rotate_webhook_secret(session: Session, org_id: str) -> str:
    """Returns a new webhook signing secret for a webhook host (the old one stops verifying at once)."""
    org = session.get(Organisation, org_id)
    if org is None:
        raise LookupError(f"organisation {org_id} is not registered")
    if org.delivery_mode != "webhook":
        raise ValueError(f"{org_id} is not a webhook host, so it has no webhook secret")
    org.webhook_secret = "whsec_" + secrets.token_urlsafe(32)
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
        "active": org.active,
    }


def list_organisations(session: Session) -> list[Organisation]:
    return list(session.exec(select(Organisation).order_by(Organisation.id)))
