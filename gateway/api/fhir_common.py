"""Shared pieces of the FHIR routes: search Bundles with paging links, ETags, If-Match, control parameters."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from starlette.responses import Response

from gateway.context import RequestContext
from gateway.http import FhirResponse
from gateway.storage.repository import Stored
from profiles.outcomes import FhirError, Issue, bad_request

CONTROL_PARAMS = frozenset({"_count", "_offset", "_format"})
# Search bounds: each is far above what a real client sends, and keeps one query's SQL (and the database's
# bound-parameter limits) small. Past them the answer is a 400 that says which bound, never a 500.
MAX_OFFSET = 10_000  # deeper than this, narrow the search (a date range) instead of paging
MAX_SEARCH_PARAMS = 50  # parameters in one query string, repeats included
MAX_ALTERNATIVES = 100  # comma-separated values of one parameter (FHIR R4 §3.1.1.3.2 "OR")
MAX_VALUE_LENGTH = 1_000  # characters in one parameter's value


def etag(version: int) -> str:
    return f'W/"{version}"'


def http_date(instant: str) -> str:
    """Returns a FHIR instant as an RFC 9110 HTTP-date (Last-Modified, If-Modified-Since)."""
    return format_datetime(datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(UTC), usegmt=True)


def resource_response(stored: Stored, *, status: int = 200, ctx: RequestContext | None = None) -> FhirResponse:
    headers = {"ETag": etag(stored.version_id), "Last-Modified": http_date(stored.resource["meta"]["lastUpdated"])}
    if status == 201 and ctx is not None:
        rtype, rid = stored.resource["resourceType"], stored.resource["id"]
        headers["Location"] = f"{ctx.base_url}/fhir/{rtype}/{rid}/_history/{stored.version_id}"
    return FhirResponse(stored.resource, status_code=status, headers=headers)


PREFER_RETURN = ("minimal", "representation", "OperationOutcome")


def prefer_return(request: Request) -> str:
    """The `Prefer: return=` a create or update asked for (R4 §3.1.0.8.1); representation by default."""
    for part in request.headers.get("prefer", "").split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "return" and value.strip().strip('"') in PREFER_RETURN:
            return value.strip().strip('"')
    return "representation"


def written_response(request: Request, stored: Stored, *, status: int, ctx: RequestContext) -> Response:
    """The answer to a create or update as `Prefer: return=` asks: the resource, nothing, or an
    OperationOutcome; the Location, ETag and Last-Modified headers always."""
    full = resource_response(stored, status=status, ctx=ctx)
    if status != 201:
        rtype, rid = stored.resource["resourceType"], stored.resource["id"]
        full.headers["Content-Location"] = f"{ctx.base_url}/fhir/{rtype}/{rid}/_history/{stored.version_id}"
    wanted = prefer_return(request)
    if wanted == "representation":
        return full
    kept = ("etag", "last-modified", "location", "content-location")
    headers = {k: v for k, v in full.headers.items() if k.lower() in kept}
    if wanted == "minimal":
        return Response(status_code=status, headers=headers)
    what = "created" if status == 201 else "updated"
    text = f"{stored.resource['resourceType']}/{stored.resource['id']} {what} (version {stored.version_id})"
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational", "diagnostics": text}],
    }
    return FhirResponse(outcome, status_code=status, headers=headers)


def not_modified(request: Request, stored: Stored) -> Response | None:
    """304 for a conditional read whose If-None-Match names the current version or whose
    If-Modified-Since is not before the last update (R4 §3.1.0.1.1, RFC 9110 §13.1.2-3)."""
    headers = {"ETag": etag(stored.version_id), "Last-Modified": http_date(stored.resource["meta"]["lastUpdated"])}
    none_match = request.headers.get("if-none-match")
    if none_match is not None:
        tags = {t.strip().removeprefix("W/").strip('"') for t in none_match.split(",")}
        return Response(status_code=304, headers=headers) if "*" in tags or str(stored.version_id) in tags else None
    since = request.headers.get("if-modified-since")
    if since:
        try:
            moment = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return None  # RFC 9110 §13.1.3: an invalid date is ignored
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        updated = datetime.fromisoformat(stored.resource["meta"]["lastUpdated"].replace("Z", "+00:00"))
        if updated.replace(microsecond=0) <= moment:
            return Response(status_code=304, headers=headers)
    return None


def if_match(request: Request) -> int | None:
    """Returns the version named by If-Match (W/"n" or "n"), None when absent; 400 when unreadable."""
    raw = request.headers.get("if-match")
    if raw is None:
        return None
    text = raw.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise bad_request(f"If-Match '{raw[:40]}' is not a version ETag like W/\"3\"", expression="If-Match")
    return int(text)


def check_format(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt and fmt not in ("json", "application/json", "application/fhir+json"):
        raise FhirError(406, [Issue("not-supported", f"_format={fmt} is not supported: this server speaks JSON")])


def search_params(request: Request, ctx: RequestContext) -> tuple[list[tuple[str, str]], int, int]:
    """Returns (search parameters, _count, _offset) from the query string."""
    check_format(request)
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in CONTROL_PARAMS]
    check_search_bounds(params)
    try:
        count = int(request.query_params.get("_count", ctx.settings.page_size_default))
        offset = int(request.query_params.get("_offset", 0))
    except ValueError:
        raise bad_request("_count and _offset must be whole numbers", expression="_count") from None
    if count < 1 or offset < 0:
        raise bad_request("_count must be at least 1 and _offset at least 0", expression="_count")
    if offset > MAX_OFFSET:
        raise bad_request(
            f"_offset may be at most {MAX_OFFSET}; narrow the search (e.g. authored=ge...) to reach older results",
            expression="_offset",
        )
    return params, min(count, ctx.settings.page_size_max), offset


def check_search_bounds(params: list[tuple[str, str]]) -> None:
    """Raises a 400 naming the bound a query string passes (parameters, alternatives, value length)."""
    if len(params) > MAX_SEARCH_PARAMS:
        raise bad_request(
            f"At most {MAX_SEARCH_PARAMS} search parameters are accepted in one search", code="too-costly"
        )
    for name, value in params:
        shown = name[:40]
        if len(value) > MAX_VALUE_LENGTH:
            raise bad_request(
                f"The value of '{shown}' is longer than {MAX_VALUE_LENGTH} characters",
                expression=shown,
                code="too-costly",
            )
        if value.count(",") >= MAX_ALTERNATIVES:
            raise bad_request(
                f"'{shown}' lists more than {MAX_ALTERNATIVES} alternatives; search in several requests",
                expression=shown,
                code="too-costly",
            )


def searchset(
    ctx: RequestContext,
    resource_type: str,
    items: list[Stored],
    params: list[tuple[str, str]],
    count: int,
    offset: int,
    has_more: bool,
) -> dict[str, Any]:
    def link(relation: str, at: int) -> dict[str, str]:
        query = urlencode([*params, ("_count", str(count)), ("_offset", str(at))])
        return {"relation": relation, "url": f"{ctx.base_url}/fhir/{resource_type}?{query}"}

    links = [link("self", offset)]
    if has_more:
        links.append(link("next", offset + count))
    if offset > 0:
        links.append(link("previous", max(0, offset - count)))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links}
    if items:  # FHIR JSON has no empty arrays: an empty searchset has no `entry`
        bundle["entry"] = [
            {
                "fullUrl": f"{ctx.base_url}/fhir/{s.resource['resourceType']}/{s.resource['id']}",
                "resource": s.resource,
                "search": {"mode": "match"},
            }
            for s in items
        ]
    return bundle
