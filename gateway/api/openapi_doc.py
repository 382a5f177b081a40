"""The OpenAPI document and the offline API docs.

FastAPI's own document describes the routes; this module finishes it for a CRM vendor's code generator
and for /docs: the OAuth 2.0 client-credentials scheme with `private_key_jwt` (RFC 7523) and each route's
SMART scope, request bodies the routes read themselves (outcomes, FHIR resources, `$process-message`),
OperationOutcome as the body of every error, links to the published JSON Schemas, and no schema the API
never returns (FastAPI's HTTPValidationError: validation errors are OperationOutcomes, gateway/validation.py).
Swagger UI is served from the `swagger-ui-bundle-v2` package's files: nothing loads from a CDN.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.staticfiles import StaticFiles

from gateway.api import answers
from gateway.api.published_schemas import SCHEMA_NAMES, schema_url
from gateway.auth.principal import ROLE_SCOPES
from gateway.deps import walk
from mappings.outcome_schema import OutcomeSubmission

ASSETS = "/docs/assets"
OUTCOME = "#/components/schemas/OperationOutcome"
FHIR_JSON = "application/fhir+json"
ERROR_TEXT = {
    "400": "Malformed request: unreadable JSON, a bad or unknown query parameter (OperationOutcome, in words)",
    "401": "No access token, or one that is expired, forged or for a disabled client",
    "403": "The token's scopes do not allow this",
    "404": "Nothing here for the caller (another organisation's ids answer the same)",
    "409": "Conflicts with the current state (e.g. a referral that was recalled or ceased)",
    "413": "The body is larger than the gateway's limit",
    "415": "Not JSON: send JSON with Content-Type: application/json",
    "422": "The body is JSON but not what this route takes; each issue names the field and what was wrong",
}
ERRORS: dict[int | str, dict[str, Any]] = {
    int(code): {"model": answers.OperationOutcome, "description": text} for code, text in ERROR_TEXT.items()
}
# Bodies routes read themselves (to keep the raw bytes or run their own checks): name -> (model, JSON Schema URL).
REQUEST_MODELS: dict[str, tuple[type[Any], str]] = {
    "OutcomeSubmission": (OutcomeSubmission, schema_url("outcome-submission")),
}
FHIR_SCHEMAS: dict[str, dict[str, Any]] = {
    "FhirResource": {
        "title": "FhirResource",
        "description": "A FHIR R4 resource in JSON (http://hl7.org/fhir/R4/json.html); UK Core based profiles "
        "are checked by the gateway (docs/integrators.md).",
        "type": "object",
        "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}},
        "required": ["resourceType"],
        "additionalProperties": True,
    },
    "FhirMessageBundle": {
        "title": "FhirMessageBundle",
        "description": "A FHIR R4 Bundle of type message, BaRS style: MessageHeader first, then ServiceRequest, "
        "Patient, Organizations, and a Consent naming the recipient (docs/integrators.md).",
        "type": "object",
        "properties": {
            "resourceType": {"const": "Bundle"},
            "type": {"const": "message"},
            "entry": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "fullUrl": {"type": "string"},
                        "resource": {"$ref": "#/components/schemas/FhirResource"},
                    },
                },
            },
        },
        "required": ["resourceType", "type", "entry"],
        "additionalProperties": True,
    },
}
DESCRIPTION = """FHIR R4 gateway for NHS social prescribing: GP systems send referrals (`/fhir`), VCSE hosts
read minimal referral packets and send status and outcomes back (`/vcse/v1`), IG officers audit (`/ig/v1`,
`/fhir/AuditEvent`), admins manage the directory (`/admin/v1`).

**Authentication**: OAuth 2.0 client credentials with a signed JWT client assertion (`private_key_jwt`,
RFC 7523): sign a JWT with your private key (`iss` = `sub` = your client id, `aud` = the token URL, a fresh
`jti`, `exp` at most 5 minutes ahead) and POST it to `/oauth2/token` with
`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`. No client secret exists.
Tokens last five minutes. `spgw token <client id> --url <base URL>` does both steps; paste its output under
*Authorize* (bearer). Each operation lists the SMART scope it needs.

**Errors**: every error, on every route, is a FHIR `OperationOutcome` (`application/fhir+json`) whose
`diagnostics` say in words what was wrong and whose `expression` names the field.

**Published JSON Schemas** (draft 2020-12): """ + ", ".join(f"[{n}]({schema_url(n)})" for n in SCHEMA_NAMES)


def json_request(component: str, url: str) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its JSON body itself: the body's schema, by component name."""
    return {
        "requestBody": {
            "required": True,
            "description": f"JSON Schema: {url}",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
        }
    }


def _scope_of(route: APIRoute) -> str | None:
    for dependant in walk(route.dependant):
        scope = getattr(dependant.call, "spgw_scope", None)
        if scope:
            return scope
    return None


def _security_schemes() -> dict[str, Any]:
    scopes = sorted({s for role in ROLE_SCOPES.values() for s in role})
    return {
        "oauth2": {
            "type": "oauth2",
            "description": "Client credentials (RFC 6749 §4.4) authenticated by `private_key_jwt` (RFC 7523 §2.2): "
            "the client signs a JWT assertion with its registered private key; there is no client secret. "
            "docs/security.md has the details.",
            "flows": {
                "clientCredentials": {
                    "tokenUrl": "/oauth2/token",
                    "scopes": {s: f"SMART v2 system scope {s}" for s in scopes},
                }
            },
            "x-token-endpoint-auth-methods-supported": ["private_key_jwt"],
            "x-client-assertion-type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        },
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT (at+jwt, RFC 9068), from POST /oauth2/token, valid five minutes",
        },
    }


def _summary(description: str, name: str) -> str:
    """A readable summary (the docstring's first sentence, else the route name in words), not FastAPI's
    "Vcse.Set-Status"."""
    if not description:
        prefix, _, action = name.rpartition(".")
        words = action.replace("-", " ")
        return f"{prefix} {words}" if prefix[:1].isupper() else words.capitalize()  # "Task vread", "List clients"
    sentence = description.split("\n\n")[0].split(". ")[0].replace("\n", " ").rstrip(".")
    return sentence if len(sentence) <= 90 else sentence[:90].rsplit(" ", 1)[0] + "..."


def _finish_operation(path: str, method: str, operation: dict[str, Any], route: APIRoute | None) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    is_fhir = path.startswith("/fhir")
    for code, response in list(responses.items()):
        content = response.get("content") or {}
        refs_validation = any("HTTPValidationError" in str(v) for v in content.values())
        if refs_validation or (code[0] in "45" and content):
            response["content"] = {FHIR_JSON: {"schema": {"$ref": OUTCOME}}}
        elif code[0] == "2" and is_fhir and not any(v.get("schema") for v in content.values()):
            response["content"] = {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/FhirResource"}}}
    if not path.startswith("/oauth2") and not path.startswith("/.well-known"):
        for code, text in ERROR_TEXT.items():
            responses.setdefault(code, {"description": text, "content": {FHIR_JSON: {"schema": {"$ref": OUTCOME}}}})
    if is_fhir and method in ("post", "put") and "requestBody" not in operation:
        name = "FhirMessageBundle" if path.endswith("$process-message") else "FhirResource"
        operation["requestBody"] = {
            "required": True,
            "content": {FHIR_JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    if is_fhir and not operation.get("tags"):
        operation["tags"] = ["FHIR R4"]
    operation["summary"] = _summary(operation.get("description", ""), route.name if route else "")
    scope = _scope_of(route) if route is not None else None
    operation["security"] = [{"oauth2": [scope]}, {"bearer": []}] if scope else []


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Yields every APIRoute, looking inside included routers (FastAPI keeps those as their own route objects)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes)


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """Returns the finished OpenAPI document (cached on the app, as FastAPI does)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, summary=app.summary, description=DESCRIPTION, routes=app.routes
    )
    components = doc.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for name, (model, url) in REQUEST_MODELS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = {**schema, "externalDocs": {"description": "JSON Schema", "url": url}}
    schemas.update(FHIR_SCHEMAS)
    for name, url in (("ReferralView", "referral-packet"), ("Notice", "notice"), ("StatusUpdate", "status-update")):
        if name in schemas:
            schemas[name]["externalDocs"] = {"description": "JSON Schema", "url": schema_url(url)}
    components["securitySchemes"] = _security_schemes()
    routes = {(r.path, m.lower()): r for r in _api_routes(app.routes) for m in r.methods}
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            _finish_operation(path, method, operation, routes.get((path, method)))
    # Every scope an operation names is declared by the flow (SMART: `.u` is within a client's `.rsu`).
    flow_scopes = components["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]["scopes"]
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            for requirement in operation["security"]:
                for scope in requirement.get("oauth2", []):
                    flow_scopes.setdefault(scope, f"SMART v2 system scope {scope}")
    doc["externalDocs"] = {"description": "Published JSON Schemas", "url": "/vcse/v1/schema"}
    app.openapi_schema = doc
    return doc


docs_router = APIRouter(include_in_schema=False)


@docs_router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json",
        title="sp-gateway API",
        swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
    )


@docs_router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


def install_docs(app: FastAPI) -> None:
    """Serves /docs from the packaged Swagger UI files and the finished /openapi.json."""
    app.include_router(docs_router)
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui-assets")
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
