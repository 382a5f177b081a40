"""Every error leaves as an OperationOutcome, and every refused or failed call is audited.

Client mistakes map to 4xx with a plain-English diagnostics; an unexpected fault is a 500
whose body says nothing about the internals (the log gets the exception type and trace,
never request content).
"""

from __future__ import annotations

import logging
import traceback
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from audit.events import ACTION_BY_INTERACTION, rest_event, system_event
from gateway.deps import app_state, make_context
from gateway.http import CORRELATION_ID, REQUEST_ID, outcome_response
from profiles.outcomes import FhirError, Issue

log = logging.getLogger("spgw.errors")

STATUS_ISSUE_CODE = {
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    401: "login",
    403: "forbidden",
}


def trace_without_messages(exc: BaseException) -> str:
    """Returns the traceback of `exc` and the exceptions it chains, naming each exception's type only:
    a message can quote request content (an NHS number, a token), and logs must never hold that."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        parts.append(f"{type(current).__module__}.{type(current).__qualname__} (message withheld)\n{frames}")
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def audit_failure(request: Request, error: FhirError) -> None:
    """Writes an AuditEvent for a call that was refused or failed (its own transaction: the action left nothing)."""
    state = app_state(request)
    described = getattr(request.state, "audit_interaction", None)
    ctx = make_context(request, state, getattr(request.state, "principal", None))
    outcome = 8 if error.status >= 500 else 4
    route = getattr(request.scope.get("route"), "path", request.url.path)
    description = f"{request.method} {route} refused with {error.status}: " + "; ".join(
        i.diagnostics for i in error.issues
    )
    now = datetime.now(UTC)
    if described and described[0] in ACTION_BY_INTERACTION:
        event = rest_event(
            ctx.audit_context,
            interaction=described[0],
            resource_type=described[1],
            resource_id=None,
            outcome=outcome,
            patient_nhs=None,
            description=description[:1000],
            recorded=now,
        )
    else:
        activity = described[0] if described else "request-refused"
        event = system_event(
            ctx.audit_context, activity=activity, outcome=outcome, description=description[:1000], recorded=now
        )
    try:
        with ctx.transaction():
            ctx.audit(event)
    except Exception as exc:
        # The refusal still reaches the caller; the operator sees that auditing it failed.
        log.error("could not write the AuditEvent for a refused request\n%s", trace_without_messages(exc))


def allowed_methods(request: Request) -> str:
    """The Allow header of a 405 (RFC 9110 §15.5.6): every method some route serves at this path, not
    only those of the first route whose path matched; HEAD wherever GET is (FHIR routes answer it).
    Asked of the routes themselves (Starlette's `matches`), so nested routers are covered too."""
    methods: set[str] = set()
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            methods.add(method)
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def on_fhir_error(request: Request, exc: FhirError):  # type: ignore[no-untyped-def]
        # The audit write is database work: run it off the event loop.
        await run_in_threadpool(audit_failure, request, exc)
        return outcome_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):  # type: ignore[no-untyped-def]
        issues = []
        for err in exc.errors()[:20]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header"))
            issues.append(Issue("invalid", f"{where or 'request'}: {err.get('msg', 'invalid')}", where or None))
        return await on_fhir_error(request, FhirError(400, issues))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException):  # type: ignore[no-untyped-def]
        code = STATUS_ISSUE_CODE.get(exc.status_code, "processing")
        text = {
            404: f"There is nothing at {request.url.path}",
            405: f"{request.method} is not supported on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return await on_fhir_error(request, FhirError(exc.status_code, [Issue(code, text)], headers))

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception):  # type: ignore[no-untyped-def]
        # The route template, never the concrete path: paths can carry identifiers (/ig/v1/patients/{nhs}).
        route = getattr(request.scope.get("route"), "path", "unmatched route")
        log.error("unexpected %s on %s %s\n%s", type(exc).__name__, request.method, route, trace_without_messages(exc))
        error = FhirError(500, [Issue("exception", "The gateway hit an internal error; nothing was stored")])
        response = await on_fhir_error(request, error)
        # Starlette sends this response from its outermost middleware, outside TraceIdsMiddleware: echo here.
        for name in (REQUEST_ID, CORRELATION_ID):
            value = request.headers.get(name, "")[:200]
            if value:
                response.headers[name] = value
        return response
