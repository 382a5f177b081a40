"""HTTP plumbing shared by every surface: FHIR JSON responses, body limits, request/correlation ids."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import observe_request
from gateway.refusals import audit_edge_refusal
from profiles.outcomes import FhirError, Issue
from profiles.structure import parse_json

FHIR_JSON = "application/fhir+json"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
REQUEST_ID = "x-request-id"
CORRELATION_ID = "x-correlation-id"
# Header caps (RFC 6585 §5, 431 Request Header Fields Too Large): common servers allow 8 KiB a line.
MAX_HEADER_BYTES = 8 * 1024
MAX_HEADERS_TOTAL_BYTES = 32 * 1024
MAX_HEADER_COUNT = 100
_UUID = re.compile(rb"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


class FhirResponse(Response):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def served_base_url(scope: Scope) -> str:
    """Returns the base URL of the address this server is bound to (scheme, host, port of the socket),
    never the request's Host header: a caller must not choose the token audience or issuer. Used only
    when SPGW_PUBLIC_BASE_URL is unset (`spgw serve` sets it to the loopback address it serves)."""
    scheme = str(scope.get("scheme") or "http")
    server = scope.get("server")
    if not server:
        return f"{scheme}://localhost"
    host, port = str(server[0]), server[1]
    shown = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{shown}" if port in (None, default) else f"{scheme}://{shown}:{port}"


def outcome_response(error: FhirError) -> FhirResponse:
    return FhirResponse(error.outcome(), status_code=error.status, headers=error.headers)


def too_large(limit: int) -> FhirError:
    return FhirError(
        413,
        [
            Issue(
                "too-costly",
                f"The request body is larger than the limit of {limit} bytes; nothing was stored",
            )
        ],
    )


class _BodyTooLarge(Exception):
    """Raised inside the app's receive() once a streamed body passes the limit."""


class _BodyTooSlow(Exception):
    """Raised inside the app's receive() once a body has not arrived whole within the deadline."""


class BodyLimitMiddleware:
    """Refuses bodies over the limit with 413 before the app reads them (Content-Length or streamed), and
    bodies that do not arrive whole within `deadline` seconds with 408: a sender trickling a byte at a
    time no longer holds a worker for ever (the server's idle timer restarts on every byte)."""

    def __init__(self, app: ASGIApp, limit: int, deadline: float = 60.0):
        self.app = app
        self.limit = limit
        self.deadline = deadline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await audit_edge_refusal(scope, 413, f"declared body of {int(value)} bytes over {self.limit}")
                await outcome_response(too_large(self.limit))(scope, receive, send)
                return
        seen = 0
        started = False
        ends = time.monotonic() + self.deadline

        body_done = False

        async def limited_receive() -> Message:
            nonlocal seen, body_done
            if body_done:  # after the body, the app may wait on receive() for a disconnect: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, ends - time.monotonic()))
            except TimeoutError:
                raise _BodyTooSlow from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            await audit_edge_refusal(scope, 413, f"streamed body over {self.limit} bytes")
            if not started:
                await outcome_response(too_large(self.limit))(scope, receive, send)
        except _BodyTooSlow:
            await audit_edge_refusal(scope, 408, f"body not received whole within {self.deadline:.0f} s")
            if not started:
                slow = FhirError(
                    408, [Issue("timeout", f"The request body did not arrive within {self.deadline:.0f} s")]
                )
                await outcome_response(slow)(scope, receive, send)


class HeaderLimitMiddleware:
    """Refuses a request whose header block is too large with 431, before anything reads a header:
    a header's bytes never reach the audit log or a handler (issue: a 2 MB X-Request-ID was stored)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_header: int = MAX_HEADER_BYTES,
        max_total: int = MAX_HEADERS_TOTAL_BYTES,
        max_count: int = MAX_HEADER_COUNT,
    ):
        self.app = app
        self.max_header, self.max_total, self.max_count = max_header, max_total, max_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        sizes = [len(name) + len(value) for name, value in headers]
        reason = None
        if len(headers) > self.max_count:
            reason = f"{len(headers)} header fields; at most {self.max_count} are accepted"
        elif sizes and max(sizes) > self.max_header:
            reason = f"a header field is longer than {self.max_header} bytes"
        elif sum(sizes) > self.max_total:
            reason = f"the header fields together are longer than {self.max_total} bytes"
        if reason is None:
            await self.app(scope, receive, send)
            return
        await audit_edge_refusal(scope, 431, reason)
        error = FhirError(431, [Issue("too-costly", f"Request header fields too large: {reason}")])
        await outcome_response(error)(scope, receive, send)


def trace_id_issues(headers: dict[bytes, bytes]) -> list[Issue]:
    """Returns one issue per X-Request-ID / X-Correlation-ID that is present but not a UUID (BaRS requires
    both to be UUIDs); the value itself is not quoted back."""
    return [
        Issue("value", f"{label} must be a UUID (RFC 9562), like 0d7e9e41-2c1b-4d6e-9f3a-5b8c7d6e5f4a", label)
        for name, label in ((REQUEST_ID, "X-Request-ID"), (CORRELATION_ID, "X-Correlation-ID"))
        if name.encode() in headers and not _UUID.match(headers[name.encode()].strip())
    ]


class TraceIdsMiddleware:
    """Echoes X-Request-ID and X-Correlation-ID on every response (NHS API platform convention), and
    refuses one that is not a UUID with 400 REC_BAD_REQUEST (BaRS) before it can reach the audit log."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        issues = trace_id_issues(headers)
        if issues:
            await audit_edge_refusal(scope, 400, " and ".join(str(i.expression) for i in issues) + " not a UUID")
            response = outcome_response(FhirError(400, issues))
            response.headers["x-request-id"] = str(uuid.uuid4())
            await response(scope, receive, send)
            return
        request_id = headers.get(REQUEST_ID.encode(), b"").strip() or str(uuid.uuid4()).encode()
        correlation_id = headers.get(CORRELATION_ID.encode(), b"").strip()

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-request-id", request_id)]
                if correlation_id:
                    extra.append((b"x-correlation-id", correlation_id))
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_ids)


async def _json_body(request: Request, accepted: tuple[str, ...]) -> dict[str, Any]:
    """Returns the request body as a JSON object; 415 for another media type, 400 for malformed JSON.

    The raw bytes stay on `request.state.raw_body` (idempotency compares retries by their hash).
    """
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in accepted:
        raise FhirError(
            415,
            [Issue("not-supported", f"Content-Type '{media or 'none'}' is not supported; send {accepted[0]}")],
        )
    raw = await request.body()
    request.state.raw_body = raw
    return parse_json(raw)


def json_content(request: Request) -> None:
    """Dependency of a JSON body route: 415 in words for another media type (a form post, say), before the
    body is validated, so the caller reads what to send instead of a validator's complaint."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("application/json", "application/fhir+json"):
        raise FhirError(
            415,
            [
                Issue(
                    "not-supported",
                    f"Content-Type '{media or 'none'}' is not supported: send JSON with Content-Type: application/json",
                )
            ],
        )


async def fhir_body(request: Request) -> dict[str, Any]:
    """Dependency: the body of a FHIR request (application/fhir+json or application/json)."""
    return await _json_body(request, JSON_TYPES)


async def json_body(request: Request) -> dict[str, Any]:
    """Dependency: the body of a plain JSON API request."""
    return await _json_body(request, ("application/json", "application/fhir+json"))


access_log = logging.getLogger("spgw.access")


class AccessLogMiddleware:
    """One log line per request with the route template, never the concrete path or query string:
    those carry NHS numbers (`patient:identifier=...|9990000018`, `/ig/v1/patients/{nhs}`)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            headers = dict(scope["headers"])
            request_id = headers.get(b"x-request-id", b"-")[:64].decode("latin-1")
            correlation_id = headers.get(b"x-correlation-id", b"-")[:64].decode("latin-1")
            outcome_code = scope.get("state", {}).get("outcome_code")
            observe_request(route, scope["method"], status, seconds, outcome_code)
            access_log.info(
                "%s %s %s %.1fms request_id=%s",
                scope["method"],
                route,
                status,
                seconds * 1000,
                request_id,
                # the same facts as fields, for SPGW_LOG_FORMAT=json
                extra={
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "request_id": request_id,
                    "correlation_id": correlation_id,
                },
            )
