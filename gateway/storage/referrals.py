"""Referral records and their business identifiers, always for one tenant (the referring organisation).

A referral's business identifiers are claimed in `referral_identifier`, whose key (tenant, system,
value) the database keeps unique: of two concurrent posts of one referral, the second insert fails
(on PostgreSQL it waits for the first to commit) and the caller answers 409.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from sqlmodel import select as orm_select

from gateway.auth.principal import Principal
from gateway.models import Referral, ReferralIdentifier
from gateway.storage.guard import race_guard
from gateway.storage.repository import execute
from gateway.storage.scope import ForTenant, scoped, tenant_of

_REFERRAL_TABLE = Referral.__table__  # type: ignore[attr-defined]
_IDENTIFIER_TABLE = ReferralIdentifier.__table__  # type: ignore[attr-defined]
_INSERT_REFERRAL = insert(_REFERRAL_TABLE)
_INSERT_IDENTIFIER = insert(_IDENTIFIER_TABLE)
_REFERRAL_COLUMNS = tuple(c.name for c in _REFERRAL_TABLE.columns)
_IDENTIFIED = select(_IDENTIFIER_TABLE.c.service_request_id).where(
    _IDENTIFIER_TABLE.c.tenant == bindparam("tenant"),
    _IDENTIFIER_TABLE.c.system == bindparam("system"),
    _IDENTIFIER_TABLE.c.value == bindparam("value"),
)


class IdentifierTaken(Exception):
    """A business identifier of this tenant already names another referral."""

    def __init__(self, system: str, value: str, service_request_id: str | None):
        super().__init__(f"{system}|{value}")
        self.system, self.value, self.service_request_id = system, value, service_request_id


def _business_identifiers(sr: dict[str, Any]) -> list[tuple[str, str]]:
    seen: dict[tuple[str, str], None] = {}
    for ident in sr.get("identifier") or []:
        if ident.get("value"):
            seen[(str(ident.get("system", ""))[:200], str(ident["value"])[:200])] = None
    return list(seen)


@scoped(Principal, ForTenant)
def identified(session: Session, scope: Principal | ForTenant, system: str, value: str) -> str | None:
    """Returns the id of the tenant's ServiceRequest received under this business identifier, if any."""
    params = {"tenant": tenant_of(scope), "system": system[:200], "value": value[:200]}
    return execute(session, _IDENTIFIED, params).scalar()


@scoped(Principal, ForTenant)
def claim_identifiers(
    session: Session, scope: Principal | ForTenant, sr: dict[str, Any], service_request_id: str
) -> None:
    """Records the referral's business identifiers for the tenant; raises IdentifierTaken when one is
    already recorded, whether seen here first or by a concurrent transaction that won the insert."""
    tenant = tenant_of(scope)
    for system, value in _business_identifiers(sr):
        earlier = identified(session, scope, system, value)
        if earlier is not None:
            raise IdentifierTaken(system, value, earlier)
        row = {"tenant": tenant, "system": system, "value": value, "service_request_id": service_request_id}
        try:
            with race_guard(session):  # a lost race rolls back this insert only
                execute(session, _INSERT_IDENTIFIER, row)
        except IntegrityError:
            raise IdentifierTaken(system, value, identified(session, scope, system, value)) from None


@scoped(Principal, ForTenant)
def insert_referral(session: Session, scope: Principal | ForTenant, referral: Referral) -> None:
    """Writes a new referral record of the tenant (a Core INSERT: the object is only read afterwards)."""
    if referral.tenant != tenant_of(scope):
        raise PermissionError("a referral is written only by (or for) its own tenant")
    execute(session, _INSERT_REFERRAL, {name: getattr(referral, name) for name in _REFERRAL_COLUMNS})


@scoped(Principal, ForTenant)
def by_service_request(session: Session, scope: Principal | ForTenant, service_request_id: str) -> Referral | None:
    """Returns the tenant's referral record for one of its ServiceRequests."""
    tenant = tenant_of(scope)
    return session.exec(
        orm_select(Referral).where(Referral.tenant == tenant, Referral.service_request_id == service_request_id)
    ).first()


@scoped(Principal, ForTenant)
def of_patient(session: Session, scope: Principal | ForTenant, nhs: str) -> list[Referral]:
    """Returns every referral the tenant made for this patient."""
    tenant = tenant_of(scope)
    return list(session.exec(orm_select(Referral).where(Referral.tenant == tenant, Referral.patient_nhs == nhs)))
