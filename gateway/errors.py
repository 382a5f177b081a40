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
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from audit.events import ACTION_BY_INTERACTION, rest_event, system_event
from gateway.deps import app_state, make_context
from gateway.http import CORRELATION_ID, REQUEST_ID, outcome_response
from gateway.validation import refusal
from profiles.outcomes import FhirError, Issue

log = logging.getLogger("spgw.errors")

UNAVAILABLE = "The gateway cannot reach its database just now; nothing was stored. Retry after the delay given"
RETRY_AFTER = "5"
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
        request.state.outcome_code = exc.issues[0].code if exc.issues else None  # a metric label (a FHIR code)
        await run_in_threadpool(audit_failure, request, exc)
        return outcome_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):  # type: ignore[no-untyped-def]
        # In words, never pydantic's own text (gateway/validation.py).
        return await on_fhir_error(request, refusal(list(exc.errors())))

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

    @app.exception_handler(DBAPIError)
    async def on_database_error(request: Request, exc: DBAPIError):  # type: ignore[no-untyped-def]
        if not database_unavailable(exc):
            return await on_unexpected(request, exc)
        # The transaction rolled back: a retry is safe, and the caller should make one.
        route = getattr(request.scope.get("route"), "path", "unmatched route")
        log.warning("database unavailable (%s) on %s %s", type(exc).__name__, request.method, route)
        error = FhirError(503, [Issue("transient", UNAVAILABLE)], {"Retry-After": RETRY_AFTER})
        return await on_fhir_error(request, error)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception):  # type: ignore[no-untyped-def]
        # The route template, never the concrete path: paths can carry identifiers (/ig/v1/patients/{nhs}).
        route = getattr(request.scope.get("route"), "path", "unmatched route")
        log.error("unexpected %s on %s %s\n%s", type(exc).__name__, request.method, route, trace_without_messages(exc))
        error = FhirError(500, [Issue("exception", "The gateway hit an internal error; nothing was stored")])
        return await _with_trace_ids(request, await on_fhir_error(request, error))


async def _with_trace_ids(request: Request, response: Response) -> Response:
    # Starlette sends this response from its outermost middleware, outside TraceIdsMiddleware: echo here.
    for name in (REQUEST_ID, CORRELATION_ID):
        value = request.headers.get(name, "")[:200]
        if value:
            response.headers[name] = value
    return response


def database_unavailable(exc: BaseException) -> bool:
    """True for the database being down, restarting, unreachable, locked past the timeout or out of
    space: the work was rolled back, nothing is half-written, and the caller may retry."""
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
