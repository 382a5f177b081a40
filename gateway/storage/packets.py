"""Packets and notices: what a VCSE host may see (only what is addressed to it), and a tenant's
packets for its own referrals. VCSE tenancy (`Packet.recipient`) is written here once.

A host knows a referral only once a packet for it was issued to it (consent permitted the
disclosure): the FHIR repository applies the same condition to Tasks (`repository._disclosed_to`).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, insert
from sqlmodel import Session, col
from sqlmodel import select as orm_select

from gateway.auth.principal import Principal, Role
from gateway.models import Packet, Referral
from gateway.storage.repository import execute
from gateway.storage.scope import DeliveryWorker, ForTenant, host_of, scoped, tenant_of

_INSERT_PACKET = insert(Packet.__table__)  # type: ignore[attr-defined]
NOTICE_KINDS = ("recall", "cease")


def _addressed_to(scope: Principal) -> ColumnElement[bool]:
    """The SQL filter of what a principal sees of packets: those addressed to its organisation when
    it is a VCSE host; nothing for any other role (a practice's own referrals are FHIR resources)."""
    return Packet.recipient == host_of(scope) if scope.role is Role.VCSE else false()


@scoped(Principal)
def owned(session: Session, scope: Principal, referral_id: str) -> tuple[Packet, Referral] | None:
    """Returns the host's referral packet and its referral; None when it is addressed to someone else."""
    addressed = _addressed_to(scope)
    row = session.exec(
        orm_select(Packet, Referral)
        .join(Referral, col(Referral.referral_id) == col(Packet.referral_id))
        .where(Packet.referral_id == referral_id, Packet.kind == "referral", addressed)
    ).first()
    return (row[0], row[1]) if row else None


@scoped(Principal)
def listed(
    session: Session, scope: Principal, status: str | None, *, since: int = 0, limit: int | None = None
) -> list[tuple[Packet, Referral]]:
    """Returns the host's referral packets (optionally in one status) changed after feed number `since`
    (0: all), in feed order, at most `limit` (the change feed: gateway/storage/feed.py numbers them)."""
    query = (
        orm_select(Packet, Referral)
        .join(Referral, col(Referral.referral_id) == col(Packet.referral_id))
        .where(Packet.kind == "referral", _addressed_to(scope), col(Packet.seq) > since)
        .order_by(col(Packet.seq), col(Packet.created))
    )
    if status is not None:
        query = query.where(Packet.status == status)
    if limit is not None:
        query = query.limit(limit)
    return [(p, r) for p, r in session.exec(query)]


@scoped(Principal)
def notices(session: Session, scope: Principal, *, since: int = 0, limit: int | None = None) -> list[Packet]:
    """Returns the recall and cease notices addressed to the host after feed number `since`, in feed order."""
    query = (
        orm_select(Packet)
        .where(_addressed_to(scope), col(Packet.kind).in_(NOTICE_KINDS), col(Packet.seq) > since)
        .order_by(col(Packet.seq), col(Packet.created))
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query))


@scoped(ForTenant)
def of_referral(
    session: Session, scope: ForTenant, referral_id: str, *, statuses: tuple[str, ...] | None = None
) -> list[Packet]:
    """Returns the referral packets of one of the tenant's referrals (optionally only in `statuses`)."""
    query = (
        orm_select(Packet)
        .join(Referral, col(Referral.referral_id) == col(Packet.referral_id))
        .where(Referral.tenant == tenant_of(scope), Packet.referral_id == referral_id, Packet.kind == "referral")
    )
    if statuses is not None:
        query = query.where(col(Packet.status).in_(statuses))
    return list(session.exec(query))


@scoped(ForTenant)
def insert_packet(session: Session, scope: ForTenant, referral: Referral, row: dict[str, object]) -> None:
    """Writes a packet or notice for one of the tenant's referrals."""
    if referral.tenant != tenant_of(scope) or row.get("referral_id") != referral.referral_id:
        raise PermissionError("a packet is written only for the tenant's own referral")
    execute(session, _INSERT_PACKET, row)


@scoped(DeliveryWorker)
def for_delivery(session: Session, scope: DeliveryWorker, packet_id: str) -> tuple[Packet, Referral] | None:
    """Returns a queued packet and its referral, for the worker's check at the moment of sending."""
    row = session.exec(
        orm_select(Packet, Referral)
        .join(Referral, col(Referral.referral_id) == col(Packet.referral_id))
        .where(Packet.packet_id == packet_id)
    ).first()
    return (row[0], row[1]) if row else None
