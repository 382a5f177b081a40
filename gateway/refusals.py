"""The audit record of a request refused at the edge, before any route saw it: a header block over the
cap (431), a malformed X-Request-ID / X-Correlation-ID (400), a body over the limit (413).

Every refusal is audited, but what the caller sent is not copied: only the method, a bounded path, the
status, our own reason and the peer address. A 2 MB header therefore costs the log a few hundred bytes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from audit import store as audit_store
from audit.events import AuditContext, system_event
from gateway.db import transaction

log = logging.getLogger("spgw.refusals")
MAX_PATH_IN_AUDIT = 200


def _record(scope: Scope, status: int, reason: str) -> None:
    app = scope.get("app")
    state = getattr(getattr(app, "state", None), "spgw", None)
    if state is None:  # the middleware runs outside a gateway app (a unit test of the middleware alone)
        return
    client = scope.get("client")
    ctx = AuditContext(source_ip=str(client[0])[:64] if client else None)
    path = str(scope.get("path", ""))[:MAX_PATH_IN_AUDIT]
    event = system_event(
        ctx,
        activity="request-refused",
        outcome=4,
        description=f"{scope.get('method', '?')} {path} refused with {status}: {reason}"[:1000],
        recorded=datetime.now(UTC),
    )
    try:
        with transaction(state.engine) as session:
            audit_store.append(session, event)
    except Exception as exc:
        from gateway.errors import trace_without_messages

        log.error("could not write the AuditEvent for a refused request\n%s", trace_without_messages(exc))


async def audit_edge_refusal(scope: Scope, status: int, reason: str) -> None:
    """Appends the AuditEvent of a refusal made by a middleware (database work: off the event loop)."""
    await run_in_threadpool(_record, scope, status, reason)
