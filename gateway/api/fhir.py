"""The FHIR REST surface at /fhir: create, read, vread, update and search for the resources the
gateway holds. Handlers stay thin: check the body, call the pipeline or repository, audit, answer.
Each route's name is `<Resource>.<interaction>`; the CapabilityStatement is built from them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from audit.events import rest_event
from gateway.api.fhir_common import if_match, resource_response, search_params, searchset
from gateway.api.idempotency import idempotent
from gateway.context import RequestContext
from gateway.deps import requires
from gateway.http import FhirResponse, fhir_body
from gateway.pipeline import consents as consent_flow
from gateway.pipeline import referrals
from mappings.referral_records import REFERENCED_TYPES, patient_nhs_of
from profiles import systems
from profiles.outcomes import bad_request
from profiles.structure import check_structure

router = APIRouter(prefix="/fhir")

# Resource type -> FHIR interactions served, for read/vread/search (create/update are routed below).
READABLE = ("ServiceRequest", "Patient", "Task", "Observation", "Consent", *REFERENCED_TYPES)


def _audit_rest(ctx: RequestContext, interaction: str, rtype: str, rid: str | None, nhs: str | None, text: str) -> None:
    ctx.audit(
        rest_event(
            ctx.audit_context,
            interaction=interaction,
            resource_type=rtype,
            resource_id=rid,
            outcome=0,
            patient_nhs=nhs,
            description=text,
            recorded=ctx.now(),
        )
    )


def _searched_nhs(params: list[tuple[str, str]]) -> str | None:
    for name, value in params:
        if name == "patient:identifier" and value.startswith(systems.NHS_NUMBER + "|"):
            return value.split("|", 1)[1]
    return None


def _add_read_routes(rtype: str) -> None:
    def read(resource_id: str, ctx: RequestContext = Depends(requires(rtype, "r", "read"))) -> FhirResponse:
        with ctx.transaction():
            stored = ctx.repo().read(rtype, resource_id)
            _audit_rest(ctx, "read", rtype, resource_id, patient_nhs_of(stored.resource), f"{rtype} read")
        return resource_response(stored)

    def vread(
        resource_id: str, version: str, ctx: RequestContext = Depends(requires(rtype, "r", "vread"))
    ) -> FhirResponse:
        if not version.isdigit():
            raise bad_request(f"'{version}' is not a version number", expression="_history")
        with ctx.transaction():
            body = ctx.repo().read_version(rtype, resource_id, int(version))
            _audit_rest(ctx, "vread", rtype, resource_id, patient_nhs_of(body), f"{rtype} version {version} read")
        return FhirResponse(body, headers={"ETag": f'W/"{version}"'})

    def search(request: Request, ctx: RequestContext = Depends(requires(rtype, "s", "search-type"))) -> FhirResponse:
        params, count, offset = search_params(request, ctx)
        with ctx.transaction():
            items, more = ctx.repo().search(rtype, params, count=count, offset=offset)
            described = "&".join(f"{k}={'<nhs-number>' if 'identifier' in k else v}" for k, v in params)
            _audit_rest(ctx, "search-type", rtype, None, _searched_nhs(params), f"{rtype} search {described}"[:500])
        return FhirResponse(searchset(ctx, rtype, items, params, count, offset, more))

    # Plain `def` handlers: FastAPI runs them in its thread pool, so database work never blocks the loop.
    router.add_api_route(f"/{rtype}/{{resource_id}}", read, methods=["GET"], name=f"{rtype}.read")
    router.add_api_route(
        f"/{rtype}/{{resource_id}}/_history/{{version}}", vread, methods=["GET"], name=f"{rtype}.vread"
    )
    router.add_api_route(f"/{rtype}", search, methods=["GET"], name=f"{rtype}.search-type")


for _rtype in READABLE:
    _add_read_routes(_rtype)


@router.post("/ServiceRequest", name="ServiceRequest.create", status_code=201)
def create_service_request(
    request: Request,
    ctx: RequestContext = Depends(requires("ServiceRequest", "c", "create")),
    body: dict[str, Any] = Depends(fhir_body),
) -> FhirResponse:
    check_structure(body, {"ServiceRequest"})

    def action() -> FhirResponse:
        return resource_response(referrals.accept_service_request(ctx, body), status=201, ctx=ctx)

    return idempotent(request, ctx, action)


@router.put("/ServiceRequest/{resource_id}", name="ServiceRequest.update")
def update_service_request(
    resource_id: str,
    request: Request,
    ctx: RequestContext = Depends(requires("ServiceRequest", "u", "update")),
    body: dict[str, Any] = Depends(fhir_body),
) -> FhirResponse:
    _checked_put_body(body, "ServiceRequest", resource_id)
    with ctx.transaction():
        changed = referrals.update_service_request(ctx, resource_id, body, if_match=if_match(request))
    return resource_response(changed)


def _checked_put_body(body: dict[str, Any], resource_type: str, resource_id: str) -> None:
    """A PUT body is a valid resource of the route's type whose id is the one in the URL (R4 §3.1.0.4)."""
    check_structure(body, {resource_type})
    if body.get("id") != resource_id:
        raise bad_request(f"{resource_type}.id must equal the id in the URL", expression=f"{resource_type}.id")


@router.post("/Consent", name="Consent.create", status_code=201)
def create_consent(
    ctx: RequestContext = Depends(requires("Consent", "c", "create")),
    body: dict[str, Any] = Depends(fhir_body),
) -> FhirResponse:
    check_structure(body, {"Consent"})
    with ctx.transaction():
        stored = consent_flow.create(ctx, body)
    return resource_response(stored, status=201, ctx=ctx)


@router.put("/Consent/{resource_id}", name="Consent.update")
def update_consent(
    resource_id: str,
    request: Request,
    ctx: RequestContext = Depends(requires("Consent", "u", "update")),
    body: dict[str, Any] = Depends(fhir_body),
) -> FhirResponse:
    _checked_put_body(body, "Consent", resource_id)
    with ctx.transaction():
        stored = consent_flow.update(ctx, resource_id, body, if_match=if_match(request))
    return resource_response(stored)


@router.get("/ServiceRequest/{resource_id}/$everything", name="operation.everything")
def service_request_everything(
    resource_id: str, ctx: RequestContext = Depends(requires("ServiceRequest", "r", "operation"))
) -> FhirResponse:
    """The whole story of one referral: the ServiceRequest, its Patient, Task, outcome Observations and
    the patient's Consents, as one searchset Bundle (what `_revinclude` would give, in one call)."""
    with ctx.transaction():
        repo = ctx.repo()
        sr = repo.read("ServiceRequest", resource_id)
        ref = f"ServiceRequest/{resource_id}"
        items = [sr]
        patient_ref = (sr.resource.get("subject") or {}).get("reference", "")
        if patient_ref.startswith("Patient/"):
            items.append(repo.read("Patient", patient_ref.removeprefix("Patient/")))
        for rtype, param, value in (
            ("Task", "focus", ref),
            ("Observation", "based-on", ref),
            ("Consent", "patient", patient_ref),
        ):
            found, _ = repo.search(rtype, [(param, value)], count=ctx.settings.page_size_max, offset=0)
            items.extend(found)
        _audit_rest(
            ctx,
            "operation",
            "ServiceRequest",
            resource_id,
            patient_nhs_of(sr.resource),
            "$everything for a referral",
        )
    return FhirResponse(searchset(ctx, "ServiceRequest", items, [], len(items) or 1, 0, False))
