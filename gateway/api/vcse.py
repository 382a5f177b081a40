"""The VCSE host API (plain JSON, /vcse/v1): the caller's referral packets, their status, notices,
outcomes, and the packet schema. Documented in docs/vcse-api.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from audit.events import system_event
from gateway.context import RequestContext
from gateway.deps import public, requires
from gateway.http import JsonResponse, json_body
from gateway.pipeline import outcomes, workflow

router = APIRouter(prefix="/vcse/v1", tags=["VCSE hosts"])
SCHEMA_FILE = Path(__file__).resolve().parents[2] / "mappings" / "data" / "referral-packet.schema.json"


class StatusUpdate(BaseModel):
    """A VCSE host's decision or progress on a referral."""

    model_config = ConfigDict(extra="forbid")
    status: str = Field(description="accepted | declined | on-hold | in-progress | completed")
    reason: str | None = Field(default=None, max_length=500, description="Why (required when declined)")


def _audit(ctx: RequestContext, activity: str, description: str) -> None:
    """The call itself, beside any disclosure events it caused (a list of nothing is still a call)."""
    ctx.audit(
        system_event(ctx.audit_context, activity=activity, outcome=0, description=description, recorded=ctx.now())
    )


@router.get("/referrals", name="vcse.list-referrals")
def list_referrals(
    status: str | None = None, ctx: RequestContext = Depends(requires("Task", "s", "vcse-list-referrals"))
) -> JsonResponse:
    """The referral packets addressed to the caller (each read is audited as a disclosure)."""
    with ctx.transaction():
        items = workflow.list_packets(ctx, status)
        _audit(ctx, "vcse-list-referrals", f"{len(items)} referral packets listed")
    return JsonResponse({"referrals": items, "count": len(items)})


@router.get("/referrals/{referral_id}", name="vcse.read-referral")
def read_referral(
    referral_id: str, ctx: RequestContext = Depends(requires("Task", "r", "vcse-read-referral"))
) -> JsonResponse:
    with ctx.transaction():
        packet = workflow.read_packet(ctx, referral_id)
        _audit(ctx, "vcse-read-referral", f"referral {referral_id} read ({packet.get('status')})")
    return JsonResponse(packet)


@router.post("/referrals/{referral_id}/status", name="vcse.set-status")
def set_status(
    referral_id: str, update: StatusUpdate, ctx: RequestContext = Depends(requires("Task", "u", "vcse-set-status"))
) -> JsonResponse:
    with ctx.transaction():
        return JsonResponse(workflow.set_status(ctx, referral_id, update.status, update.reason))


@router.post("/referrals/{referral_id}/outcomes", name="vcse.submit-outcomes")
def submit_outcomes(
    referral_id: str,
    body: dict[str, Any] = Depends(json_body),
    ctx: RequestContext = Depends(requires("Observation", "c", "create")),
) -> JsonResponse:
    """Wellbeing scores, activities and closing summary; a retried submission_id creates nothing new."""
    with ctx.transaction():
        status, answer = outcomes.submit(ctx, referral_id, body)
    return JsonResponse(answer, status_code=status)


@router.get("/notices", name="vcse.list-notices")
def list_notices(ctx: RequestContext = Depends(requires("Task", "r", "vcse-list-notices"))) -> JsonResponse:
    """Recall notices (the GP cancelled) and cease notices (consent withdrawn) for the caller."""
    with ctx.transaction():
        notices = workflow.list_notices(ctx)
        _audit(ctx, "vcse-list-notices", f"{len(notices)} notices listed")
    return JsonResponse({"notices": notices})


@router.get("/schema/referral-packet", name="vcse.packet-schema")
def packet_schema(ctx: RequestContext = Depends(public("Schema", "packet-schema-read"))) -> Any:
    """The JSON Schema of the referral packet (versioned; public: it holds no personal data)."""
    with ctx.transaction():
        ctx.audit(
            system_event(
                ctx.audit_context, activity="packet-schema-read", outcome=0, description=None, recorded=ctx.now()
            )
        )
    return JsonResponse(json.loads(SCHEMA_FILE.read_text()))
