"""`GET /healthz` (the process answers) and `GET /readyz` (it can do its work), for load balancers and
orchestrators. Unauthenticated, so the answers say only "ok" or "unavailable": which check failed goes
to the log for the operator, never to the caller (it would tell an attacker what to aim at)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from sqlalchemy import Engine, func, select

from gateway.http import JsonResponse
from gateway.schema import current_revisions, head_revisions
from gateway.state import AppState

router = APIRouter(include_in_schema=False)
log = logging.getLogger("spgw.health")
RETRY_AFTER = "5"
_HEADS = frozenset(head_revisions())


@router.get("/healthz", name="health.live")
def healthz() -> JsonResponse:
    return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


@router.get("/readyz", name="health.ready")
def readyz(request: Request) -> JsonResponse:
    failed = failed_check(request.app.state.spgw)
    if failed is None:
        return JsonResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})
    log.warning("not ready: %s", failed)
    return JsonResponse(
        {"status": "unavailable"}, status_code=503, headers={"Retry-After": RETRY_AFTER, "Cache-Control": "no-store"}
    )


def failed_check(state: AppState) -> str | None:
    """Returns the name of the first readiness check that fails, or None when every one passes."""
    if state.token_keys is None or state.token_keys.current is None:
        return "signing keys not loaded"
    try:
        if set(current_revisions(state.engine)) != _HEADS:
            return "schema not current"
        lag = outbox_lag(state.engine, datetime.now(UTC))
    except Exception as exc:
        return f"database unreachable ({type(exc).__name__})"
    if lag > timedelta(seconds=state.settings.ready_outbox_max_lag):
        return f"outbox behind by {int(lag.total_seconds())} s"
    return None


def outbox_lag(engine: Engine, now: datetime) -> timedelta:
    """How long the most overdue pending delivery has been due and unclaimed: the workers' backlog.
    A receiver that is down does not count (its messages wait for their backoff, not for a worker),
    so one partner's outage never takes the gateway out of its load balancer."""
    from gateway.models import OutboxMessage

    with engine.connect() as conn:
        due = conn.execute(
            select(func.min(OutboxMessage.next_attempt_at)).where(
                OutboxMessage.status == "pending",
                OutboxMessage.next_attempt_at <= now,
                (OutboxMessage.locked_until.is_(None)) | (OutboxMessage.locked_until < now),  # type: ignore[union-attr]
            )
        ).scalar()
    if due is None:
        return timedelta(0)
    due = due if due.tzinfo else due.replace(tzinfo=UTC)
    return max(timedelta(0), now - due)
