"""The VCSE host API (plain JSON, /vcse/v1): the caller's referral packets as a change feed, their
status and acknowledgement, notices, outcomes, the published JSON Schemas and the sandbox. Documented in
docs/vcse-api.md; errors are OperationOutcomes in words (gateway/validation.py)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Depends, Query

from audit.events import system_event
from gateway.api import answers
from gateway.api.openapi_doc import ERRORS, json_request
from gateway.api.published_schemas import SCHEMA_NAMES, build, schema_url
from gateway.context import RequestContext
from gateway.deps import known_query_params, public, requires
from gateway.http import JsonResponse, json_body, json_content
from gateway.pipeline import outcomes, sandbox, workflow
from gateway.storage.feed import decode_cursor, encode_cursor
from profiles.outcomes import FhirError, Issue

router = APIRouter(prefix="/vcse/v1", tags=["VCSE hosts"], dependencies=[Depends(known_query_params)])
sandbox_router = APIRouter(prefix="/vcse/v1", tags=["VCSE sandbox"], dependencies=[Depends(known_query_params)])

SchemaName = StrEnum("SchemaName", {n.replace("-", "_"): n for n in SCHEMA_NAMES})  # type: ignore[misc]
STATUS = Query(None, description="Only packets in this status")
SINCE = Query(None, max_length=40, description="A cursor from an earlier answer: only what changed after it")
LIMIT = Query(500, ge=1, le=500, description="At most this many items; `more` says whether others wait")


def _audit(ctx: RequestContext, activity: str, description: str) -> None:
    """The call itself, beside any disclosure events it caused (a list of nothing is still a call)."""
    ctx.audit(
        system_event(ctx.audit_context, activity=activity, outcome=0, description=description, recorded=ctx.now())
    )


def _since(cursor: str | None) -> int:
    if cursor is None:
        return 0
    seq = decode_cursor(cursor)
    if seq is None:
        raise FhirError(
            400,
            [Issue("value", "since must be a cursor exactly as an earlier list answer gave it (`cursor`)", "since")],
        )
    return seq


@router.get(
    "/referrals",
    name="vcse.list-referrals",
    responses={200: {"model": answers.ReferralList}, **ERRORS},
)
def list_referrals(
    status: answers.PacketStatus | None = STATUS,
    since: str | None = SINCE,
    limit: int = LIMIT,
    ctx: RequestContext = Depends(requires("Task", "s", "vcse-list-referrals")),
) -> JsonResponse:
    """The referral packets addressed to the caller that changed after `since` (all of them without it), in
    the order they changed, with the `cursor` to pass next time. The first read of each packet version is
    audited as a disclosure, a later read of the same version as re-access."""
    after = _since(since)
    with ctx.transaction():
        page = workflow.list_packets(ctx, status, since=after, limit=limit)
        _audit(ctx, "vcse-list-referrals", f"{len(page.items)} referral packets listed")
    return JsonResponse(
        {"referrals": page.items, "count": len(page.items), "cursor": encode_cursor(page.last_seq), "more": page.more}
    )


@router.get(
    "/referrals/{referral_id}",
    name="vcse.read-referral",
    responses={200: {"model": answers.ReferralView}, **ERRORS},
)
def read_referral(
    referral_id: str, ctx: RequestContext = Depends(requires("Task", "r", "vcse-read-referral"))
) -> JsonResponse:
    """One referral packet, as the host may see it now."""
    with ctx.transaction():
        packet = workflow.read_packet(ctx, referral_id)
        _audit(ctx, "vcse-read-referral", f"referral {referral_id} read ({packet.get('status')})")
    return JsonResponse(packet)


@router.post(
    "/referrals/{referral_id}/status",
    name="vcse.set-status",
    responses={200: {"model": answers.StatusAnswer}, **ERRORS},
)
def set_status(
    referral_id: str,
    update: answers.StatusUpdate,
    ctx: RequestContext = Depends(requires("Task", "u", "vcse-set-status")),
    _json: None = Depends(json_content),
) -> JsonResponse:
    """Accept, decline (with a reason), start or complete a referral; the GP's Task follows.
    JSON Schema of the body: /vcse/v1/schema/status-update."""
    with ctx.transaction():
        return JsonResponse(workflow.set_status(ctx, referral_id, update.status, update.reason))


@router.post(
    "/referrals/{referral_id}/ack",
    name="vcse.acknowledge",
    responses={200: {"model": answers.AckAnswer}, **ERRORS},
)
def acknowledge(
    referral_id: str, ctx: RequestContext = Depends(requires("Task", "u", "vcse-acknowledge"))
) -> JsonResponse:
    """Acknowledge that your CRM has stored the packet (no body). A referral still `requested` shows the GP
    `received`; acknowledging again changes nothing."""
    with ctx.transaction():
        answer = workflow.acknowledge(ctx, referral_id)
        _audit(ctx, "vcse-acknowledge", f"referral {referral_id} acknowledged")
    return JsonResponse(answer)


@router.post(
    "/referrals/{referral_id}/outcomes",
    name="vcse.submit-outcomes",
    status_code=201,
    responses={
        201: {"model": answers.OutcomeAnswer, "description": "A new submission: the Observations written"},
        200: {"model": answers.OutcomeAnswer, "description": "The same submission again: nothing new written"},
        **ERRORS,
    },
    openapi_extra=json_request("OutcomeSubmission", schema_url("outcome-submission")),
)
def submit_outcomes(
    referral_id: str,
    body: dict[str, Any] = Depends(json_body),
    ctx: RequestContext = Depends(requires("Observation", "c", "create")),
) -> JsonResponse:
    """Wellbeing scores, activities and closing summary; a retried submission_id creates nothing new.
    JSON Schema of the body: /vcse/v1/schema/outcome-submission."""
    with ctx.transaction():
        status, answer = outcomes.submit(ctx, referral_id, body)
    return JsonResponse(answer, status_code=status)


@router.get("/notices", name="vcse.list-notices", responses={200: {"model": answers.NoticeList}, **ERRORS})
def list_notices(
    since: str | None = SINCE,
    limit: int = LIMIT,
    ctx: RequestContext = Depends(requires("Task", "r", "vcse-list-notices")),
) -> JsonResponse:
    """Recall notices (the GP cancelled) and cease notices (consent ended) after `since`, with the `cursor`
    to pass next time. Each is a /vcse/v1/schema/notice."""
    after = _since(since)
    with ctx.transaction():
        page = workflow.list_notices(ctx, since=after, limit=limit)
        _audit(ctx, "vcse-list-notices", f"{len(page.items)} notices listed")
    return JsonResponse(
        {"notices": page.items, "count": len(page.items), "cursor": encode_cursor(page.last_seq), "more": page.more}
    )


@router.get("/schema", name="vcse.schema-index", responses={200: {"model": answers.SchemaIndex}, **ERRORS})
def schema_index(ctx: RequestContext = Depends(public("Schema", "schema-index-read"))) -> JsonResponse:
    """Where each published JSON Schema is served (public: they hold no personal data)."""
    with ctx.transaction():
        _audit(ctx, "schema-index-read", f"{len(SCHEMA_NAMES)} schemas listed")
    return JsonResponse({"schemas": {name: schema_url(name) for name in SCHEMA_NAMES}})


@router.get(
    "/schema/{name}",
    name="vcse.schema",
    responses={200: {"description": "A JSON Schema (draft 2020-12)", "content": {"application/json": {}}}, **ERRORS},
)
def published_schema(
    name: SchemaName,  # type: ignore[valid-type]
    ctx: RequestContext = Depends(public("Schema", "packet-schema-read")),
) -> JsonResponse:
    """The JSON Schema of a body a CRM sends or receives: referral-packet, notice, webhook-envelope,
    outcome-submission, status-update (versioned; public: it holds no personal data)."""
    with ctx.transaction():
        ctx.audit(
            system_event(
                ctx.audit_context,
                activity="packet-schema-read",
                outcome=0,
                description=f"schema {name.value}",
                recorded=ctx.now(),
            )
        )
    return JsonResponse(build(name.value))


@sandbox_router.post(
    "/sandbox/referrals",
    name="vcse.sandbox-referral",
    status_code=201,
    responses={201: {"model": answers.SandboxReferral}, **ERRORS},
)
def sandbox_referral(ctx: RequestContext = Depends(requires("Task", "s", "vcse-sandbox-referral"))) -> JsonResponse:
    """A synthetic referral for the calling host (a fictitious person, consent naming you), through the real
    pipeline: list it, accept it, send outcomes. Only on a gateway run with SPGW_SANDBOX=true (the demo)."""
    with ctx.transaction():
        made = sandbox.make_referral(ctx)
        _audit(ctx, "vcse-sandbox-referral", f"sandbox referral {made['referral_id']} made for the caller")
    return JsonResponse(made, status_code=201)
