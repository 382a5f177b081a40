"""`POST /fhir/$process-message`: a referral or cancellation as a BaRS-style FHIR message Bundle.

BaRS requires X-Request-ID and X-Correlation-ID on every message, as UUIDs (400 REC_BAD_REQUEST
when missing or malformed; both missing is one OperationOutcome with two issues). The call is
synchronous; the answer is a BaRS response message (a `message` Bundle whose MessageHeader names the
request in `response.identifier`, `response.code` ok, focus on the stored ServiceRequest and Task:
mappings/response_message.py), or an OperationOutcome.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from gateway.api.idempotency import idempotent
from gateway.context import RequestContext
from gateway.deps import requires
from gateway.http import FhirResponse, fhir_body
from gateway.pipeline import referrals
from profiles.outcomes import FhirError, Issue
from profiles.structure import check_structure

router = APIRouter(prefix="/fhir")


@router.post("/$process-message", name="operation.process-message")
def process_message(
    request: Request,
    ctx: RequestContext = Depends(requires("ServiceRequest", "c", "create")),
    body: dict[str, Any] = Depends(fhir_body),
) -> Any:
    missing = [
        Issue("required", f"{name} is required on every message (BaRS)", name)
        for name, value in (("X-Request-ID", ctx.request_id), ("X-Correlation-ID", ctx.correlation_id))
        if not value
    ]
    if missing:  # both at once when both are missing: one answer names everything to fix
        raise FhirError(400, missing)
    check_structure(body, {"Bundle"})

    def action() -> FhirResponse:
        return FhirResponse(referrals.accept_message(ctx, body))

    return idempotent(request, ctx, action, required=True)
