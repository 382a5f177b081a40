"""FHIR search as a client expects it (R4 §3.1.1): the result parameters `_count` (0 = count only),
`_offset`, `_summary`, `_total`, `_sort`, `_elements`, `_include`, `_revinclude`; `_id` and
`_lastUpdated`; strict handling of unknown parameters by default and `Prefer: handling=lenient`
(unknown ones ignored and reported in an `outcome` entry). The repository does every look-up, so
tenancy is in the SQL of the matches, the total and every included or revincluded resource.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import Request

from gateway.api.fhir_common import CONTROL_PARAMS, MAX_OFFSET, check_search_bounds
from gateway.context import RequestContext
from gateway.storage.repository import COMMON_PARAMS, Repository, Stored
from gateway.storage.searchparams import SEARCH_PARAMS
from mappings.fhir_views import Summary, elements_view, summary_view
from profiles.outcomes import bad_request

# Result parameters (R4 §3.1.1.5): they shape the answer, they do not select. `_totalMethod` is the
# spelling fhirpy's `count()` sends (count = an accurate total); `_format`/`_pretty` are negotiation.
RESULT_PARAMS = frozenset(
    {
        "_count",
        "_offset",
        "_summary",
        "_total",
        "_totalMethod",
        "_sort",
        "_elements",
        "_include",
        "_revinclude",
        "_format",
        "_pretty",
    }
)
SUMMARIES = ("true", "text", "data", "count", "false")
TOTALS = ("none", "estimate", "accurate")
# `_include` / `_revinclude` this server follows: (source type, reference parameter) -> target type.
INCLUDES: dict[tuple[str, str], str] = {
    ("ServiceRequest", "patient"): "Patient",
    ("ServiceRequest", "subject"): "Patient",  # R4's own name; fhirclient's include() uses element names
    ("Observation", "based-on"): "ServiceRequest",
    ("Observation", "patient"): "Patient",
    ("Task", "focus"): "ServiceRequest",
    ("Consent", "patient"): "Patient",
    ("PractitionerRole", "practitioner"): "Practitioner",
    ("PractitionerRole", "organization"): "Organization",
}


def includes_of(resource_type: str) -> list[str]:
    return [f"{src}:{param}" for (src, param) in INCLUDES if src == resource_type]


def revincludes_of(resource_type: str) -> list[str]:
    return [f"{src}:{param}" for (src, param), target in INCLUDES.items() if target == resource_type]


@dataclass
class SearchRequest:
    params: list[tuple[str, str]]
    count: int
    offset: int
    summary: str | None = None
    total: str | None = None
    sort: list[tuple[str, bool]] = field(default_factory=list)
    elements: frozenset[str] | None = None
    includes: list[tuple[str, str]] = field(default_factory=list)
    revincludes: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # lenient: what was left out, for the outcome entry
    passthrough: list[tuple[str, str]] = field(default_factory=list)  # result parameters kept in page links

    @property
    def count_only(self) -> bool:
        return self.summary == "count" or self.count == 0


def lenient(request: Request) -> bool:
    """`Prefer: handling=lenient` (R4 §3.1.1.6); strict is the default."""
    prefer = request.headers.get("prefer", "")
    return any(part.strip().lower() == "handling=lenient" for part in prefer.split(","))


def parse_search(resource_type: str, items: list[tuple[str, str]], ctx: RequestContext, *, is_lenient: bool):
    """Returns the SearchRequest of a query (query string and any form body); 400 for what cannot be
    honoured, unless lenient, where an unknown parameter is ignored and reported."""
    known = {*SEARCH_PARAMS.get(resource_type, {}), *COMMON_PARAMS}
    out = SearchRequest(params=[], count=ctx.settings.page_size_default, offset=0)
    check_search_bounds([(n, v) for n, v in items if n not in CONTROL_PARAMS])

    def refuse(name: str, text: str) -> None:
        if is_lenient:
            out.ignored.append(f"{name}: {text}")
            return
        raise bad_request(text, expression=name, code="not-supported")

    for name, value in items:
        if name not in RESULT_PARAMS:
            if name in known:
                out.params.append((name, value))
            else:
                supported = ", ".join(sorted(known)) or "none"
                refuse(name, f"Unknown search parameter '{name}' for {resource_type}; supported: {supported}")
            continue
        if name in ("_count", "_offset"):
            if not value.isdigit():
                raise bad_request(f"{name} must be a whole number, not '{value[:20]}'", expression=name)
            setattr(out, name[1:], int(value))
        elif name == "_summary":
            if value not in SUMMARIES:
                refuse(name, f"_summary={value[:20]} is not one of {', '.join(SUMMARIES)}")
            else:
                out.summary = value
        elif name in ("_total", "_totalMethod"):
            wanted = "accurate" if value == "count" else value
            if wanted not in TOTALS:
                refuse(name, f"{name}={value[:20]} is not one of {', '.join(TOTALS)}")
            else:
                out.total = wanted
        elif name == "_sort":
            out.sort = _sort_keys(resource_type, value, refuse)
        elif name == "_elements":
            out.elements = frozenset(e.strip() for e in value.split(",") if e.strip())
        elif name in ("_include", "_revinclude"):
            pair = _include_pair(resource_type, name, value, refuse)
            if pair:
                (out.includes if name == "_include" else out.revincludes).append(pair)
        if name not in ("_count", "_offset", "_format"):
            out.passthrough.append((name, value))
    if out.offset > MAX_OFFSET:
        raise bad_request(
            f"_offset may be at most {MAX_OFFSET}; narrow the search (e.g. authored=ge...) to reach older results",
            expression="_offset",
        )
    if out.elements is not None and out.summary not in (None, "false"):
        raise bad_request("_summary and _elements cannot be used together (R4 §3.1.1.5.8)", expression="_elements")
    out.count = min(out.count, ctx.settings.page_size_max)
    return out


def _sort_keys(resource_type: str, value: str, refuse: Any) -> list[tuple[str, bool]]:
    dates = {p.name for p in SEARCH_PARAMS.get(resource_type, {}).values() if p.type == "date"}
    keys = []
    for raw in (k.strip() for k in value.split(",") if k.strip()):
        name = raw.removeprefix("-")
        if name in dates or name == "_lastUpdated":
            keys.append((name, raw.startswith("-")))
        else:
            sortable = ", ".join([*sorted(dates), "_lastUpdated"])
            refuse("_sort", f"Cannot sort {resource_type} by '{name}'; sortable: {sortable}")
    return keys


def _include_pair(resource_type: str, name: str, value: str, refuse: Any) -> tuple[str, str] | None:
    parts = value.split(":")
    supported = includes_of(resource_type) if name == "_include" else revincludes_of(resource_type)
    if len(parts) in (2, 3):
        source, param = parts[0], parts[1]
        target = INCLUDES.get((source, param))
        fits = source == resource_type if name == "_include" else target == resource_type
        if target and fits and (len(parts) == 2 or parts[2] == target):
            return source, param
    refuse(name, f"{name}={value[:60]} is not supported here; supported: {', '.join(supported) or 'none'}")
    return None


def run_search(repo: Repository, resource_type: str, search: SearchRequest) -> tuple[list[Stored], bool, int | None]:
    """Returns (matches, more, total or None)."""
    want_total = search.count_only or search.total in ("accurate", "estimate")
    total = repo.count(resource_type, search.params) if want_total else None
    if search.count_only:
        return [], False, total
    items, more = repo.search(resource_type, search.params, count=search.count, offset=search.offset, sort=search.sort)
    return items, more, total


def included(repo: Repository, resource_type: str, search: SearchRequest, matches: list[Stored]) -> list[Stored]:
    """Returns the `_include`d and `_revinclude`d resources the caller may see, each once, none a match."""
    seen = {(s.resource["resourceType"], s.resource["id"]) for s in matches}
    out: list[Stored] = []

    def add(found: list[Stored]) -> None:
        for s in found:
            key = (s.resource["resourceType"], s.resource["id"])
            if key not in seen:
                seen.add(key)
                out.append(s)

    for source, param in search.includes:
        target = INCLUDES[(source, param)]
        extract = SEARCH_PARAMS[source][param].extract
        assert extract is not None
        ids = [
            ref.removeprefix(f"{target}/")
            for s in matches
            for _, ref in extract(s.resource)
            if ref.startswith(f"{target}/")
        ]
        add(repo.read_many(target, sorted(set(ids))))
    refs = [f"{resource_type}/{s.resource['id']}" for s in matches]
    for source, param in search.revincludes:
        if refs:
            found, _ = repo.search(source, [(param, ",".join(refs))], count=1000, offset=0)
            add(found)
    return out


def searchset(
    ctx: RequestContext,
    resource_type: str,
    search: SearchRequest,
    matches: list[Stored],
    more: bool,
    total: int | None,
    extra: list[Stored] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    """Returns the searchset Bundle: links that repeat the query, matches, includes, the lenient outcome."""

    def link(relation: str, at: int) -> dict[str, str]:
        query = urlencode([*search.params, *search.passthrough, ("_count", str(search.count)), ("_offset", str(at))])
        return {"relation": relation, "url": f"{ctx.base_url}/fhir/{resource_type}?{query}"}

    links = [link("self", search.offset)]
    if more:
        links.append(link("next", search.offset + search.count))
    if search.offset > 0 and not search.count_only:
        links.append(link("previous", max(0, search.offset - search.count)))
    entries = [_entry(ctx, _view(s.resource, search), "match") for s in matches]
    entries += [_entry(ctx, _view(s.resource, search), "include") for s in extra]
    if search.ignored:
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {"severity": "warning", "code": "not-supported", "diagnostics": f"Ignored {text}"}
                        for text in search.ignored
                    ],
                },
                "search": {"mode": "outcome"},
            }
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if entries:  # FHIR JSON has no empty arrays: an empty searchset has no `entry`
        bundle["entry"] = entries
    return bundle


def _view(resource: dict[str, Any], search: SearchRequest) -> dict[str, Any]:
    if search.elements is not None:
        return elements_view(resource, search.elements)
    if search.summary in ("true", "text", "data"):
        summary: Summary = search.summary  # type: ignore[assignment]
        return summary_view(resource, summary)
    return resource


def _entry(ctx: RequestContext, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{ctx.base_url}/fhir/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": mode},
    }
