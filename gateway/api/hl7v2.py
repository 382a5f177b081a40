"""`POST /hl7v2`: an HL7 v2 referral (ER7) over HTTP, authenticated like the FHIR routes; the answer
is always an HL7 ACK (AA/AE/AR) for content, and an OperationOutcome only for HTTP-level refusals
(no token 401, wrong scope 403, wrong media type 415, body too large 413)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gateway.context import RequestContext
from gateway.deps import requires
from gateway.pipeline.hl7v2 import handle_message
from profiles.outcomes import FhirError, Issue

router = APIRouter(tags=["HL7 v2"])
ER7_TYPES = ("x-application/hl7-v2+er7", "application/hl7-v2+er7", "application/hl7-v2", "text/plain")
ER7_MEDIA = "x-application/hl7-v2+er7"


@router.post("/hl7v2", name="hl7v2.message")
async def hl7v2_message(
    request: Request, ctx: RequestContext = Depends(requires("ServiceRequest", "c", "hl7v2-message"))
) -> Response:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ER7_TYPES:
        raise FhirError(
            415, [Issue("not-supported", f"Content-Type '{media or 'none'}' is not HL7 v2 ER7; send {ER7_MEDIA}")]
        )
    raw = await request.body()
    ack = await run_in_threadpool(
        handle_message,
        ctx.engine,
        ctx.settings,
        ctx.principal,
        raw,
        source_ip=ctx.source_ip,
        request_id=ctx.request_id,
        correlation_id=ctx.correlation_id,
    )
    return Response(ack, media_type=ER7_MEDIA)
