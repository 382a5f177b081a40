"""The admin API (/admin/v1): organisations and their data-sharing agreements, clients, and the
delivery outbox. Admins manage the directory; they read no patient data."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from audit.events import system_event
from gateway.api import answers
from gateway.api.openapi_doc import ERRORS
from gateway.auth import clients as client_service
from gateway.auth.principal import Role
from gateway.context import RequestContext
from gateway.delivery import worker
from gateway.deps import known_query_params, requires
from gateway.http import JsonResponse
from gateway.models import Organisation
from gateway.organisations import (
    endpoint_changes,
    endpoints_of,
    fields_needing_ig_approval,
    list_organisations,
    public_view,
    request_agreement,
    rotate_webhook_secret,
    upsert_organisation,
)
from profiles.outcomes import FhirError, Issue, not_found

router = APIRouter(prefix="/admin/v1", tags=["Administration"], dependencies=[Depends(known_query_params)])


class OrganisationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["gp-practice", "referrer", "vcse", "icb"]
    delivery_mode: Literal["pull", "webhook"] = "pull"
    webhook_url: str | None = Field(default=None, max_length=500)  # the SSRF rule: gateway/endpoints.py
    fhir_endpoint: str | None = Field(default=None, max_length=500)
    allowed_fields: list[str] | None = Field(default=None, description="The data-sharing agreement's allow-list")


class ClientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_id: str = Field(min_length=1, max_length=100)
    organisation: str
    role: Role
    scopes: list[str] | None = None
    jwks: dict[str, Any] = Field(description="The client's public JWKS (private keys are refused)")
    may_assert_end_user: bool = Field(default=False, description="May the client name its end user (X-End-User)?")


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[int] | None = None


def _audit(ctx: RequestContext, activity: str, description: str) -> None:
    ctx.audit(
        system_event(ctx.audit_context, activity=activity, outcome=0, description=description, recorded=ctx.now())
    )


def _invalid(exc: ValueError, where: str) -> FhirError:
    return FhirError(422, [Issue("invalid", str(exc), where)])


@router.get(
    "/organisations", name="admin.list-organisations", responses={200: {"model": answers.OrganisationList}, **ERRORS}
)
def organisations(
    ctx: RequestContext = Depends(requires("Organization", "s", "admin-list-organisations", role=Role.ADMIN)),
):
    with ctx.transaction() as session:
        rows = [public_view(o) for o in list_organisations(session)]
        _audit(ctx, "admin-list-organisations", f"{len(rows)} organisations listed")
    return JsonResponse({"organisations": rows})


@router.put(
    "/organisations/{org_id}",
    name="admin.put-organisation",
    responses={200: {"model": answers.OrganisationView}, **ERRORS},
)
def put_organisation(
    org_id: str,
    body: OrganisationIn,
    ctx: RequestContext = Depends(requires("Organization", "u", "admin-put-organisation", role=Role.ADMIN)),
) -> JsonResponse:
    """Registers or updates an organisation; a new webhook secret is shown once, in this answer.

    Widening the agreement to identifying fields (beyond the current agreement and the IG default set)
    is not applied: it waits for an IG officer's approval (`POST /ig/v1/organisations/{id}/agreement/approve`).
    """
    with ctx.transaction() as session:
        existing = session.get(Organisation, org_id)
        before = endpoints_of(existing)
        fields = body.model_dump()
        requested = fields.pop("allowed_fields")
        current = list(existing.allowed_fields) if existing else []
        widening = fields_needing_ig_approval(current, requested or [])
        applied = [f for f in requested if f not in widening] if requested is not None else None
        try:
            org, secret = upsert_organisation(
                session,
                org_id=org_id,
                allowed_fields=applied,
                allow_insecure_endpoints=ctx.settings.allow_insecure_endpoints,
                **fields,
            )
            if widening:
                request_agreement(session, org, requested, ctx.principal.client_id if ctx.principal else None)
        except ValueError as exc:
            raise _invalid(exc, "allowed_fields" if "field" in str(exc) else "url") from None
        _audit(
            ctx,
            "admin-put-organisation",
            f"organisation {org_id} saved (agreement: {', '.join(org.allowed_fields) or 'nothing'})"
            + endpoint_changes(before, org)
            + (f"; widening to {', '.join(widening)} waits for IG approval" if widening else ""),
        )
        view = public_view(org)
    if secret:
        view["webhook_secret"] = secret
    return JsonResponse(view)


@router.post(
    "/organisations/{org_id}/rotate-secret",
    name="admin.rotate-webhook-secret",
    responses={200: {"model": answers.SecretAnswer}, **ERRORS},
)
def rotate_secret(
    org_id: str,
    ctx: RequestContext = Depends(requires("Organization", "u", "admin-rotate-webhook-secret", role=Role.ADMIN)),
) -> JsonResponse:
    """A new webhook signing secret for a webhook host, shown once in this answer."""
    with ctx.transaction() as session:
        try:
            secret = rotate_webhook_secret(session, org_id)
        except LookupError:
            raise not_found(f"organisation {org_id} is not registered") from None
        except ValueError as exc:
            raise FhirError(409, [Issue("business-rule", str(exc), "delivery_mode")]) from None
        _audit(ctx, "admin-rotate-webhook-secret", f"organisation {org_id}: webhook secret rotated")
    return JsonResponse({"id": org_id, "webhook_secret": secret})


@router.get("/clients", name="admin.list-clients", responses={200: {"model": answers.ClientList}, **ERRORS})
def list_clients(
    ctx: RequestContext = Depends(requires("Client", "s", "admin-list-clients", role=Role.ADMIN)),
) -> JsonResponse:
    with ctx.transaction() as session:
        rows = client_service.list_clients(session)
        _audit(ctx, "admin-list-clients", f"{len(rows)} clients listed")
    return JsonResponse({"clients": rows})


@router.post(
    "/clients", name="admin.add-client", status_code=201, responses={201: {"model": answers.ClientView}, **ERRORS}
)
def add_client(
    body: ClientIn, ctx: RequestContext = Depends(requires("Client", "c", "admin-add-client", role=Role.ADMIN))
):
    with ctx.transaction() as session:
        try:
            client = client_service.add_client(
                session,
                ig_reads_clinical=ctx.settings.ig_reads_clinical,
                client_id=body.client_id,
                organisation_id=body.organisation,
                role=body.role,
                scopes=body.scopes,
                public_jwks=body.jwks,
                # Separation of duties: the admin's registration waits for an out-of-band confirmation
                # on the gateway host (`spgw clients approve`), so an admin cannot mint itself a client.
                pending_approval=True,
                registered_by=ctx.principal.client_id if ctx.principal else None,
                may_assert_end_user=body.may_assert_end_user,
            )
        except ValueError as exc:
            raise _invalid(exc, "jwks") from None
        _audit(
            ctx,
            "admin-add-client",
            f"client {client.client_id} registered ({client.role} for {client.organisation_id}); "
            "inactive until approved on the gateway host",
        )
    return JsonResponse(
        {
            "client_id": client.client_id,
            "organisation": client.organisation_id,
            "role": client.role,
            "scopes": client.scopes.split(),
            "active": False,
            "pending_approval": True,
            "next_step": f"on the gateway host, after confirming the keys with the organisation: "
            f"spgw clients approve {client.client_id}",
        },
        status_code=201,
    )


@router.post(
    "/clients/{client_id}/disable",
    name="admin.disable-client",
    responses={200: {"model": answers.DisabledClient}, **ERRORS},
)
def disable_client(
    client_id: str, ctx: RequestContext = Depends(requires("Client", "u", "admin-disable-client", role=Role.ADMIN))
):
    with ctx.transaction() as session:
        try:
            client_service.disable_client(session, client_id)
        except ValueError:
            raise not_found(f"client {client_id} is not registered") from None
        _audit(ctx, "admin-disable-client", f"client {client_id} disabled")
    return JsonResponse({"client_id": client_id, "active": False})


@router.get("/outbox", name="admin.list-outbox", responses={200: {"model": answers.DeliveryList}, **ERRORS})
def list_outbox(
    status: Literal["pending", "delivered", "dead", "withdrawn"] | None = None,
    ctx: RequestContext = Depends(requires("Organization", "r", "admin-list-outbox", role=Role.ADMIN)),
) -> JsonResponse:
    """Deliveries and their state; `status=dead` is the dead-letter queue."""
    rows = worker.outbox_rows(ctx.engine, status)
    with ctx.transaction():
        _audit(ctx, "admin-list-outbox", f"{len(rows)} outbox rows listed")
    return JsonResponse({"deliveries": rows})


@router.post("/outbox/retry", name="admin.retry-outbox", responses={200: {"model": answers.Requeued}, **ERRORS})
def retry_outbox(
    body: RetryIn, ctx: RequestContext = Depends(requires("Organization", "u", "admin-retry-outbox", role=Role.ADMIN))
):
    count = worker.retry(ctx.engine, body.ids)
    with ctx.transaction():
        _audit(ctx, "admin-retry-outbox", f"{count} dead-lettered deliveries requeued")
    return JsonResponse({"requeued": count})
