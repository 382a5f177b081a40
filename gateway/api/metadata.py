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
from gateway.api.fhir_search import INCLUDES
from gateway.context import RequestContext
from gateway.deps import public
from gateway.http import FhirResponse
from gateway.storage.searchparams import SEARCH_PARAMS
from profiles.outcomes import not_found

router = APIRouter(prefix="/fhir")

# CapabilityStatement.date: when this statement (this running server's build of it) came to be.
STARTED = datetime.now(UTC)
try:
    VERSION = package_version("sp-gateway")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
BARS_MESSAGE_DEFINITIONS = "https://fhir.nhs.uk/MessageDefinition/"
CONDITIONAL_CREATE = frozenset({"ServiceRequest"})
# Parameters every resource type answers (FHIR R4 §3.1.1.5).
COMMON_SEARCH_PARAMS = (
    {"name": "_id", "type": "token", "documentation": "Logical id (comma-separated for any of several)."},
    {"name": "_lastUpdated", "type": "date", "documentation": "When last changed (ge, le, gt, lt, eq)."},
)
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
            # `POST [type]/_search` is the search-type interaction too (R4 §3.1.1.1)
            interactions[owner].add(interaction.removesuffix("-post"))
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
        if "create" in interactions[rtype] and rtype in CONDITIONAL_CREATE:
            entry["conditionalCreate"] = True
        if "read" in interactions[rtype]:
            entry["conditionalRead"] = "full-support"
        params = search_params.get(rtype, {})
        if "search-type" in interactions[rtype] and params:
            # _id and _lastUpdated: on every type the FHIR repository holds (AuditEvent lives in the audit log)
            common = COMMON_SEARCH_PARAMS if rtype in SEARCH_PARAMS else ()
            entry["searchParam"] = [*_declared_params(params), *common]
            includes = [f"{src}:{param}" for (src, param) in INCLUDES if src == rtype]
            revincludes = [f"{src}:{param}" for (src, param), target in INCLUDES.items() if target == rtype]
            if includes:
                entry["searchInclude"] = includes
            if revincludes:
                entry["searchRevInclude"] = revincludes
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
                **(
                    {
                        "operation": [
                            {"name": name, "definition": OPERATION_DEFINITIONS.get(name, f"{base_url}/fhir/{name}")}
                            for name in sorted(operations)
                        ]
                    }
                    if operations
                    else {}
                ),
            }
        ],
        **({"messaging": [_messaging(base_url)]} if "process-message" in operations else {}),
    }


def _declared_params(params: dict[str, Any]) -> list[dict[str, Any]]:
    """One searchParam per name without its modifier (R4: `name` is the parameter's code); a modifier
    the server supports (`patient:identifier`) is said in the documentation of the base parameter."""
    by_base: dict[str, dict[str, Any]] = {}
    for p in params.values():
        base, _, modifier = p.name.partition(":")
        entry = by_base.setdefault(base, {"name": base, "type": p.type, "documentation": ""})
        if modifier:
            entry["type"] = "reference"  # `:identifier` is a modifier of a reference parameter
            note = f"Modifier :{modifier} supported ({p.documentation})."
        else:
            note = p.documentation + "."
        entry["documentation"] = f"{entry['documentation']} {note}".strip()
    for entry in by_base.values():
        if entry["name"] not in params:
            entry["documentation"] += " Only with the modifier."
    return list(by_base.values())


def _messaging(base_url: str) -> dict[str, Any]:
    """CapabilityStatement.messaging: the BaRS referral and cancellation messages this server receives at
    `$process-message`, synchronously, over HTTP."""
    return {
        "endpoint": [
            {
                "protocol": {"system": "http://terminology.hl7.org/CodeSystem/message-transport", "code": "http"},
                "address": f"{base_url}/fhir/$process-message",
            }
        ],
        "documentation": "BaRS servicerequest-request messages (reason new or update for a cancellation), "
        "answered with a servicerequest-response message or an OperationOutcome.",
        "supportedMessage": [
            {
                "mode": "receiver",
                "definition": BARS_MESSAGE_DEFINITIONS + "bars-message-servicerequest-request-referral",
            },
            {
                "mode": "receiver",
                "definition": BARS_MESSAGE_DEFINITIONS + "bars-message-servicerequest-request-cancelled",
            },
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


def operation_definitions(base_url: str) -> dict[str, dict[str, Any]]:
    """The OperationDefinitions of this server's own operations, by id (what the CapabilityStatement names)."""
    everything = {
        "resourceType": "OperationDefinition",
        "id": "ServiceRequest-everything",
        "url": f"{base_url}/fhir/OperationDefinition/ServiceRequest-everything",
        "name": "ServiceRequestEverything",
        "title": "Everything about one referral",
        "status": "active",
        "kind": "operation",
        "description": "Returns the ServiceRequest, its Patient, its Task, the outcome Observations based on it "
        "and the patient's Consents, as one searchset Bundle, within the caller's tenant.",
        "code": "everything",
        "resource": ["ServiceRequest"],
        "system": False,
        "type": False,
        "instance": True,
        "parameter": [
            {
                "name": "return",
                "use": "out",
                "min": 1,
                "max": "1",
                "documentation": "A searchset Bundle",
                "type": "Bundle",
            }
        ],
    }
    return {everything["id"]: everything}


@router.get("/OperationDefinition/{definition_id}", name="OperationDefinition.read")
def operation_definition(
    definition_id: str, ctx: RequestContext = Depends(public("OperationDefinition", "read"))
) -> FhirResponse:
    found = operation_definitions(ctx.base_url).get(definition_id)
    if found is None:
        raise not_found(f"OperationDefinition/{definition_id} is not known")
    with ctx.transaction():
        ctx.audit(
            rest_event(
                ctx.audit_context,
                interaction="read",
                resource_type="OperationDefinition",
                resource_id=found["id"],
                outcome=0,
                patient_nhs=None,
                description="OperationDefinition read",
                recorded=ctx.now(),
            )
        )
    return FhirResponse(found)
