"""Idempotent creates keyed by (client, X-Request-ID), as the NHS API platform and BaRS use it.

A retry with the same X-Request-ID and the same body gets the first answer again (with
`X-Idempotent-Replay: true`) and stores nothing new: a client whose first response was lost
in transit can safely retry. The same X-Request-ID with a different body is a 409
(BaRS REC_CONFLICT, issue code `duplicate`): the id was reused for something else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy.exc import IntegrityError
from starlette.responses import Response

from audit.events import rest_event
from gateway.context import RequestContext
from gateway.http import FhirResponse
from gateway.models import IdempotencyRecord
from profiles.outcomes import bad_request, conflict

REPLAY_HEADER = "X-Idempotent-Replay"


def _replay(ctx: RequestContext, record: IdempotencyRecord, body_hash: str) -> Response:
    if record.body_sha256 != body_hash:
        raise conflict(
            f"X-Request-ID {record.request_id} was already used for a different request; use a new X-Request-ID "
            "for a new request, or resend the identical body to get the first answer again"
        )
    headers = {REPLAY_HEADER: "true"}
    if record.location:
        headers["Location"] = record.location
    ctx.audit(
        rest_event(
            ctx.audit_context,
            interaction="create",
            resource_type="Bundle",
            resource_id=None,
            outcome=0,
            patient_nhs=None,
            description=f"Retry of X-Request-ID {record.request_id}: first answer returned, nothing stored",
            recorded=datetime.now(UTC),
        )
    )
    return Response(
        record.response, status_code=record.status_code, headers=headers, media_type=FhirResponse.media_type
    )


def idempotent(
    request: Request, ctx: RequestContext, action: Callable[[], Response], *, required: bool = False
) -> Response:
    """Returns the action's response, or the first response to an identical earlier request."""
    assert ctx.principal is not None
    request_id = ctx.request_id
    if not request_id:
        if required:
            raise bad_request(
                "X-Request-ID is required on every message (BaRS)", expression="X-Request-ID", code="required"
            )
        with ctx.transaction():
            return action()
    body_hash = hashlib.sha256(getattr(request.state, "raw_body", b"")).hexdigest()
    key = (ctx.principal.client_id, request_id[:100])
    for attempt in range(2):
        try:
            with ctx.transaction() as session:
                existing = session.get(IdempotencyRecord, key)
                if existing is not None:
                    return _replay(ctx, existing, body_hash)
                response = action()
                session.add(
                    IdempotencyRecord(
                        client_id=key[0],
                        request_id=key[1],
                        body_sha256=body_hash,
                        status_code=response.status_code,
                        response=bytes(response.body).decode(),
                        location=response.headers.get("location"),
                    )
                )
            return response
        except IntegrityError:
            # A concurrent twin committed first (PostgreSQL); the second pass replays its answer.
            if attempt:
                raise
    raise AssertionError("unreachable")
