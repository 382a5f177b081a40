"""Consents: the ones a consent decision reads are the referring tenant's own, for one patient, all
of them (filtered by tenant and NHS number in SQL; no limit, so a decision never sees half)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.storage import resources
from gateway.storage.scope import ForTenant, scoped


@scoped(Principal, ForTenant)
def of_patient(session: Session, scope: Principal | ForTenant, nhs: str) -> list[dict[str, Any]]:
    """Returns every Consent the tenant holds for this patient, newest first."""
    return [s.resource for s in resources.of_patient(session, scope, "Consent", nhs)]
