"""The FHIR REST surface at /fhir: create, read, vread, update and search for the resources the
gateway holds. Handlers stay thin: check the body, call the pipeline or repository, audit, answer.
Each route's name is `<Resource>.<interaction>`; the CapabilityStatement is built from them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from audit.events import rest_event
from gateway.api.fhir_common import http_date, if_match, not_modified, resource_response, written_response
from gateway.api.fhir_search import (
    INCLUDES,
    RESULT_PARAMS,
    SearchRequest,
    included,
    lenient,
    parse_search,
    run_search,
    searchset,
)
from gateway.api.idempotency import idempotent
from gateway.context import RequestContext
from gateway.deps import requires
from gateway.http import FhirResponse, fhir_body
from gateway.pipeline import consents as consent_flow
from gateway.pipeline import referrals
from gateway.storage.repository import Stored
from mappings.referral_records import REFERENCED_TYPES, patient_nhs_of
from profiles import systems
from profiles.outcomes import FhirError, Issue, bad_request, forbidden
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


def _search(request: Request, ctx: RequestContext, rtype: str, items: list[tuple[str, str]]) -> FhirResponse:
    search = parse_search(rtype, items, ctx, is_lenient=lenient(request))
    assert ctx.principal is not None
    # An included resource is read as much as a matched one: the token must allow reading its type.
    read_types = [(INCLUDES[pair], pair) for pair in search.includes] + [(pair[0], pair) for pair in search.revincludes]
    for other, (source, param) in read_types:
        if not ctx.principal.may(other, "r"):
            raise forbidden(f"The token does not grant system/{other}.r, which including {source}:{param} needs")
    with ctx.transaction():
        repo = ctx.repo()
        matches, more, total = run_search(repo, rtype, search)
        extra = included(repo, rtype, search, matches)
        described = "&".join(
            f"{k}={'<nhs-number>' if 'identifier' in k else v}"
            for k, v in [*search.params, *((k, v) for k, v in search.passthrough if k in ("_include", "_revinclude"))]
        )
        if extra:
            described += f" ({len(extra)} included)"
        _audit_rest(ctx, "search-type", rtype, None, _searched_nhs(search.params), f"{rtype} search {described}"[:500])
    return FhirResponse(searchset(ctx, rtype, search, matches, more, total, extra))


async def form_params(request: Request) -> list[tuple[str, str]]:
    """Dependency: the parameters of `POST [type]/_search` (R4 §3.1.1.1: form-encoded body)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise FhirError(
            415,
            [Issue("not-supported", f"POST _search takes application/x-www-form-urlencoded, not '{media or 'none'}'")],
        )
    form = await request.form()
    return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]


def _add_read_routes(rtype: str) -> None:
    def read(
        resource_id: str, request: Request, ctx: RequestContext = Depends(requires(rtype, "r", "read"))
    ) -> Response:
        with ctx.transaction():
            stored = ctx.repo().read(rtype, resource_id)
            _audit_rest(ctx, "read", rtype, resource_id, patient_nhs_of(stored.resource), f"{rtype} read")
        return not_modified(request, stored) or resource_response(stored)

    def vread(
        resource_id: str, version: str, ctx: RequestContext = Depends(requires(rtype, "r", "vread"))
    ) -> FhirResponse:
        if not version.isdigit():
            raise bad_request(f"'{version}' is not a version number", expression="_history")
        with ctx.transaction():
            body = ctx.repo().read_version(rtype, resource_id, int(version))
            _audit_rest(ctx, "vread", rtype, resource_id, patient_nhs_of(body), f"{rtype} version {version} read")
        headers = {"ETag": f'W/"{version}"', "Last-Modified": http_date(body["meta"]["lastUpdated"])}
        return FhirResponse(body, headers=headers)

    def history(
        resource_id: str, ctx: RequestContext = Depends(requires(rtype, "r", "history-instance"))
    ) -> FhirResponse:
        with ctx.transaction():
            versions = ctx.repo().history(rtype, resource_id)
            nhs = patient_nhs_of(versions[0][2]) if versions else None
            _audit_rest(ctx, "history-instance", rtype, resource_id, nhs, f"{rtype} history read")
        return FhirResponse(history_bundle(ctx, rtype, resource_id, versions))

    def search(request: Request, ctx: RequestContext = Depends(requires(rtype, "s", "search-type"))) -> FhirResponse:
        return _search(request, ctx, rtype, list(request.query_params.multi_items()))

    def search_post(
        request: Request,
        ctx: RequestContext = Depends(requires(rtype, "s", "search-type")),  # first: a refused form is audited
        form: list[tuple[str, str]] = Depends(form_params),
    ) -> FhirResponse:
        return _search(request, ctx, rtype, [*request.query_params.multi_items(), *form])

    # Plain `def` handlers: FastAPI runs them in its thread pool, so database work never blocks the loop.
    router.add_api_route(f"/{rtype}/_search", search_post, methods=["POST"], name=f"{rtype}.search-type-post")
    router.add_api_route(f"/{rtype}/{{resource_id}}", read, methods=["GET"], name=f"{rtype}.read")
    router.add_api_route(
        f"/{rtype}/{{resource_id}}/_history", history, methods=["GET"], name=f"{rtype}.history-instance"
    )
    router.add_api_route(
        f"/{rtype}/{{resource_id}}/_history/{{version}}", vread, methods=["GET"], name=f"{rtype}.vread"
    )
    router.add_api_route(f"/{rtype}", search, methods=["GET"], name=f"{rtype}.search-type")


def history_bundle(
    ctx: RequestContext, rtype: str, resource_id: str, versions: list[tuple[int, Any, dict[str, Any]]]
) -> dict[str, Any]:
    """Returns an instance `history` Bundle, newest version first (R4 §3.1.0.6)."""
    url = f"{ctx.base_url}/fhir/{rtype}/{resource_id}"
    entries = [
        {
            "fullUrl": url,
            "resource": body,
            "request": {
                "method": "POST" if version == 1 else "PUT",
                "url": rtype if version == 1 else f"{rtype}/{resource_id}",
            },
            "response": {
                "status": "201 Created" if version == 1 else "200 OK",
                "etag": f'W/"{version}"',
                "lastModified": body["meta"]["lastUpdated"],
            },
        }
        for version, _, body in versions
    ]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "total": len(entries),
        "link": [{"relation": "self", "url": f"{url}/_history"}],
    }
    if entries:
        bundle["entry"] = entries
    return bundle


for _rtype in READABLE:
    _add_read_routes(_rtype)


@router.post("/ServiceRequest", name="ServiceRequest.create", status_code=201)
def create_service_request(
    request: Request,
    ctx: RequestContext = Depends(requires("ServiceRequest", "c", "create")),
    body: dict[str, Any] = Depends(fhir_body),
) -> Response:
    check_structure(body, {"ServiceRequest"})
    condition = request.headers.get("if-none-exist")

    def action() -> Response:
        if condition is not None:
            existing = _conditional_match(ctx, "ServiceRequest", condition)
            if existing is not None:
                return written_response(request, existing, status=200, ctx=ctx)
        stored = referrals.accept_service_request(ctx, body)
        return written_response(request, stored, status=201, ctx=ctx)

    return idempotent(request, ctx, action)


def _conditional_match(ctx: RequestContext, rtype: str, condition: str) -> Stored | None:
    """If-None-Exist (R4 §3.1.0.8.1): the one match of the search in the caller's tenant, None when there
    is none, 412 when several."""
    params = parse_qsl(condition.strip().lstrip("?"), keep_blank_values=True)
    if not params or any(name in RESULT_PARAMS for name, _ in params):
        raise bad_request(
            "If-None-Exist must be search parameters, e.g. identifier=https://example.org/referrals|R1",
            expression="If-None-Exist",
        )
    search = parse_search(rtype, params, ctx, is_lenient=False)
    found, _ = ctx.repo().search(rtype, search.params, count=2, offset=0)
    if len(found) > 1:
        raise FhirError(412, [Issue("duplicate", f"If-None-Exist matches more than one {rtype}; nothing was created")])
    return found[0] if found else None


@router.put("/ServiceRequest/{resource_id}", name="ServiceRequest.update")
def update_service_request(
    resource_id: str,
    request: Request,
    ctx: RequestContext = Depends(requires("ServiceRequest", "u", "update")),
    body: dict[str, Any] = Depends(fhir_body),
) -> Response:
    _checked_put_body(body, "ServiceRequest", resource_id)
    with ctx.transaction():
        changed = referrals.update_service_request(ctx, resource_id, body, if_match=if_match(request))
    return written_response(request, changed, status=200, ctx=ctx)


def _checked_put_body(body: dict[str, Any], resource_type: str, resource_id: str) -> None:
    """A PUT body is a valid resource of the route's type whose id is the one in the URL (R4 §3.1.0.4)."""
    check_structure(body, {resource_type})
    if body.get("id") != resource_id:
        raise bad_request(f"{resource_type}.id must equal the id in the URL", expression=f"{resource_type}.id")


@router.post("/Consent", name="Consent.create", status_code=201)
def create_consent(
    request: Request,
    ctx: RequestContext = Depends(requires("Consent", "c", "create")),
    body: dict[str, Any] = Depends(fhir_body),
) -> Response:
    check_structure(body, {"Consent"})
    with ctx.transaction():
        stored = consent_flow.create(ctx, body)
    return written_response(request, stored, status=201, ctx=ctx)


@router.put("/Consent/{resource_id}", name="Consent.update")
def update_consent(
    resource_id: str,
    request: Request,
    ctx: RequestContext = Depends(requires("Consent", "u", "update")),
    body: dict[str, Any] = Depends(fhir_body),
) -> Response:
    _checked_put_body(body, "Consent", resource_id)
    with ctx.transaction():
        stored = consent_flow.update(ctx, resource_id, body, if_match=if_match(request))
    return written_response(request, stored, status=200, ctx=ctx)


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
    everything = SearchRequest(params=[], count=len(items) or 1, offset=0)
    return FhirResponse(searchset(ctx, "ServiceRequest", everything, items, False, None))
