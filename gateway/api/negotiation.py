"""Content negotiation on every /fhir route, in one place (R4 §3.1.0.1.9, §2.6.3 `fhirVersion`):

- `_format` other than JSON, or an `Accept` that allows only another FHIR format or another FHIR
  version (`fhirVersion` other than 4.0), is 406 with an OperationOutcome;
- `_pretty=true` pretty-prints the JSON answer;
- `HEAD` answers like `GET` without a body (RFC 9110 §9.3.2).
"""

from __future__ import annotations

from contextlib import suppress
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.http import outcome_response
from profiles.outcomes import FhirError, Issue

JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json", "application/json+fhir"})
JSON_RANGES = JSON_FORMATS | {"*/*", "application/*"}
OTHER_FHIR_FORMATS = frozenset(
    {"xml", "ttl", "application/fhir+xml", "application/xml", "text/xml", "application/fhir+turtle", "text/turtle"}
)
R4_VERSIONS = frozenset({"4.0", "4.0.1"})


def _media(value: str) -> tuple[str, dict[str, str]]:
    kind, *params = value.split(";")
    parsed = {}
    for param in params:
        key, _, val = param.partition("=")
        parsed[key.strip().lower()] = val.strip().strip('"')
    return kind.strip().lower(), parsed


def refusal(query: str, accept: str | None) -> FhirError | None:
    """Returns the 406 a request's `_format` or `Accept` earns, None when JSON FHIR R4 may be answered."""
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name != "_format":
            continue
        kind, params = _media(value)
        if kind not in JSON_FORMATS:
            return _not_acceptable(f"_format={value[:60]} is not supported: this server speaks FHIR R4 JSON")
        if params.get("fhirversion", "4.0") not in R4_VERSIONS:
            return _not_acceptable(f"fhirVersion={params['fhirversion'][:20]} is not supported: this is FHIR R4 (4.0)")
    if not accept:
        return None
    ranges = [_media(part) for part in accept.split(",") if part.strip()]
    if any(kind in JSON_RANGES and params.get("fhirversion", "4.0") in R4_VERSIONS for kind, params in ranges):
        return None
    versions = [p["fhirversion"] for _, p in ranges if "fhirversion" in p]
    if versions:
        return _not_acceptable(f"Accept asks for fhirVersion {versions[0][:20]}; this server speaks FHIR R4 (4.0)")
    if any(kind in OTHER_FHIR_FORMATS for kind, _ in ranges):
        return _not_acceptable(f"Accept '{accept[:80]}' allows no JSON; this server speaks application/fhir+json")
    return None  # e.g. text/html from a browser: answered in JSON, the only representation there is


def _not_acceptable(text: str) -> FhirError:
    return FhirError(406, [Issue("not-supported", text)])


class FhirNegotiationMiddleware:
    def __init__(self, app: ASGIApp, prefix: str = "/fhir"):
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        headers = dict(scope["headers"])
        error = refusal(query, headers.get(b"accept", b"").decode("latin-1") or None)
        if error is not None:
            await outcome_response(error)(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        pretty = ("_pretty", "true") in parse_qsl(query)
        if head:
            scope = {**scope, "method": "GET"}
        if not head and not pretty:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _Reshaping(send, head=head, pretty=pretty))


class _Reshaping:
    """Wraps `send`: holds a JSON body to indent it (`_pretty`), or drops the body (`HEAD`)."""

    def __init__(self, send: Send, *, head: bool, pretty: bool):
        self.send, self.head, self.pretty = send, head, pretty
        self.start: Message | None = None
        self.body = b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.body += message.get("body", b"")
        if message.get("more_body"):
            return
        body = self.body
        if self.pretty and body:
            with suppress(orjson.JSONDecodeError):  # not JSON (a 304, a redirect): sent as it is
                body = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
        headers = [(k, v) for k, v in self.start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": b"" if self.head else body})
