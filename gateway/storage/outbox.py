"""The outbox: deliveries owed outside, queued in the transaction of the change that caused them, and
leased by the delivery worker. Queuing is done for one tenant's change; leasing spans tenants and is
the delivery worker's alone."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_
from sqlmodel import Session, col
from sqlmodel import select as orm_select

from gateway.auth.principal import Principal
from gateway.models import OutboxMessage
from gateway.storage.scope import DeliveryWorker, ForTenant, scoped


@scoped(Principal, ForTenant)
def enqueue(
    session: Session,
    scope: Principal | ForTenant,
    *,
    kind: str,
    target: str,
    dedup_key: str,
    body: str,
    content_type: str = "application/json",
) -> None:
    """Queues one delivery to `target` (an organisation id), committed or rolled back with the change."""
    session.add(OutboxMessage(kind=kind, target=target, dedup_key=dedup_key, body=body, content_type=content_type))


@scoped(DeliveryWorker)
def lease_due(
    session: Session,
    scope: DeliveryWorker,
    *,
    now: datetime,
    batch: int,
    lease: timedelta,
    skip_locked: bool,
    skip_targets: frozenset[str] = frozenset(),
) -> list[OutboxMessage]:
    """Returns up to `batch` due rows (oldest first), leased until now + lease, leaving out `skip_targets`
    (receivers found unreachable in this pass). The limit here is a batch size, not a filter: every due
    row is taken by a later batch."""
    query = (
        orm_select(OutboxMessage)
        .where(
            OutboxMessage.status == "pending",
            OutboxMessage.next_attempt_at <= now,
            or_(col(OutboxMessage.locked_until).is_(None), col(OutboxMessage.locked_until) < now),
        )
        .order_by(col(OutboxMessage.pk))
        .limit(batch)
    )
    if skip_targets:
        query = query.where(col(OutboxMessage.target).not_in(skip_targets))
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    rows = list(session.exec(query))
    for row in rows:
        row.locked_until = now + lease
        session.add(row)
    return rows


@scoped(DeliveryWorker)
def row(session: Session, scope: DeliveryWorker, pk: int) -> OutboxMessage | None:
    """Returns one outbox row (to record what happened to it)."""
    return session.get(OutboxMessage, pk)
