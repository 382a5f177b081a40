"""`GET /fhir/metadata`: the CapabilityStatement, built from the routes the app really serves and
the search parameters the repository really indexes (route names are `<Resource>.<interaction>`)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute

from audit import search as audit_search
from audit.events import rest_event
from gateway.context import RequestContext
from gateway.deps import public
from gateway.http import FhirResponse
from gateway.storage.searchparams import SEARCH_PARAMS

router = APIRouter(prefix="/fhir")

# CapabilityStatement.date: when this statement (this running server's build of it) came to be.
STARTED = datetime.now(UTC)
try:
    VERSION = package_version("sp-gateway")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
OPERATION_DEFINITIONS = {
    "process-message": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
}


def capability_statement(routes: list[Any], base_url: str, search_params: dict[str, Any]) -> dict[str, Any]:
    """Returns an R4 CapabilityStatement for the FHIR routes given (pure: the app passes its routes)."""
    interactions: dict[str, set[str]] = defaultdict(set)
    operations: list[str] = []
    type_operations: dict[str, set[str]] = defaultdict(set)
    for route in routes:
        if not isinstance(route, APIRoute) or not route.path.startswith("/fhir/") or "." not in (route.name or ""):
            continue
        owner, _, interaction = route.name.partition(".")
        if owner == "operation":
            # /fhir/$op is a system operation (rest.operation); /fhir/<Type>/.../$op belongs to its
            # resource (rest.resource.operation), R4 CapabilityStatement.
            on_type = route.path.split("/")[2]
            if on_type.startswith("$"):
                operations.append(interaction)
            else:
                type_operations[on_type].add(interaction)
        elif owner[:1].isupper():
            interactions[owner].add(interaction)
    resources = []
    for rtype in sorted(set(interactions) | set(type_operations)):
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": [{"code": code} for code in sorted(interactions[rtype])],
            "versioning": "versioned",
            "readHistory": "vread" in interactions[rtype],
            "updateCreate": False,
        }
        if rtype in ("ServiceRequest",):
            entry["profile"] = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-ServiceRequest"
        params = search_params.get(rtype, {})
        if "search-type" in interactions[rtype] and params:
            entry["searchParam"] = [
                {
                    "name": p.name,
                    "type": "token" if p.type == "reference" and ":" in p.name else p.type,
                    "documentation": p.documentation,
                }
                for p in params.values()
            ]
        if type_operations[rtype]:
            entry["operation"] = [
                {"name": name, "definition": f"{base_url}/fhir/OperationDefinition/{rtype}-{name}"}
                for name in sorted(type_operations[rtype])
            ]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STARTED.isoformat(timespec="seconds"),
        "publisher": "sp-gateway",
        "kind": "instance",
        "software": {"name": "sp-gateway", "version": VERSION},
        "implementation": {
            "description": "Social prescribing interoperability gateway",
            "url": f"{base_url}/fhir",
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "OAuth 2.0 client credentials with a signed JWT client assertion "
                    "(private_key_jwt, RFC 7523); SMART v2 system scopes.",
                    "extension": [
                        {
                            "url": SMART_OAUTH_URIS,
                            "extension": [{"url": "token", "valueUri": f"{base_url}/oauth2/token"}],
                        }
                    ],
                },
                "resource": resources,
                "operation": [
                    {"name": name, "definition": OPERATION_DEFINITIONS.get(name, f"{base_url}/fhir/{name}")}
                    for name in sorted(operations)
                ],
            }
        ],
    }


@router.get("/metadata", name="system.capabilities")
def metadata(request: Request, ctx: RequestContext = Depends(public("CapabilityStatement", "capabilities"))):
    from gateway.api.fhir_common import check_format

    check_format(request)
    # AuditEvent's parameters are data in audit/search.py, the others in gateway/storage/searchparams.py.
    params = {**SEARCH_PARAMS, "AuditEvent": audit_search.SEARCH_PARAMS}
    body = capability_statement(request.app.state.fhir_routes, ctx.base_url, params)
    with ctx.transaction():
        ctx.audit(
            rest_event(
                ctx.audit_context,
                interaction="capabilities",
                resource_type="CapabilityStatement",
                resource_id=None,
                outcome=0,
                patient_nhs=None,
                description="CapabilityStatement read",
                recorded=ctx.now(),
            )
        )
    return FhirResponse(body)
