"""Body and query mistakes in words: every pydantic error of a JSON API call becomes an OperationOutcome
issue that says what was wrong and where (`status must be one of accepted, ...; got 'done'`), never the
validator's own text ("Input should be a valid dictionary or object to extract fields from")."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from profiles.outcomes import FhirError, Issue

SEND_JSON = "send JSON with Content-Type: application/json"
_PLACES = {"body": "the body", "query": "the query", "path": "the path", "header": "the headers"}


def refusal(errors: Sequence[dict[str, Any]]) -> FhirError:
    """Returns the error for a request FastAPI could not validate: 400 for unreadable JSON or a bad query or
    path parameter, 422 for a body that is JSON but not what the route takes; at most 20 issues."""
    issues = [issue_for(e) for e in errors[:20]]
    unreadable = any(e.get("type") == "json_invalid" for e in errors)
    in_body = all(tuple(e.get("loc", ()))[:1] == ("body",) for e in errors)
    return FhirError(422 if in_body and not unreadable else 400, issues)


def issue_for(error: dict[str, Any]) -> Issue:
    loc = tuple(error.get("loc", ()))
    place = _PLACES.get(str(loc[0])) if loc else None
    path = json_path(loc[1:] if place else loc)
    code, text = describe(error, path, place or "the request")
    return Issue(code, text, path or None)


def json_path(loc: Iterable[int | str]) -> str:
    """Returns `a.b[3].c` for a pydantic error location."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(error: dict[str, Any], path: str, place: str) -> tuple[str, str]:
    """Returns (IssueType code, plain-English diagnostics) for one pydantic error at `path` in `place`."""
    kind: str = error.get("type", "")
    ctx: dict[str, Any] = error.get("ctx") or {}
    got = _got(error.get("input"))
    name = path or place
    if kind == "json_invalid":
        return "structure", f"The body is not valid JSON ({ctx.get('error', 'unreadable')}); {SEND_JSON}"
    if kind == "missing":
        if not path:
            return "required", f"{place[0].upper()}{place[1:]} is missing; {SEND_JSON}"
        where = "query parameter" if place == "the query" else "field"
        return "required", f"The {where} {path} is required"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        if not path:
            return "structure", f"The body must be a JSON object; {SEND_JSON}"
        return "structure", f"{name} must be a JSON object; got {got}"
    if kind == "extra_forbidden":
        return "structure", f"{name} is not a field this route takes (check the spelling)"
    if kind in {"literal_error", "enum"}:
        return "code-invalid", f"{name} must be one of {_choices(ctx.get('expected', ''))}; got {got}"
    if kind == "string_type":
        return "value", f"{name} must be text; got {got}"
    if kind == "string_too_short":
        return "value", f"{name} must not be empty"
    if kind == "string_too_long":
        return "value", f"{name} must be at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return "value", f"{name} must match {ctx.get('pattern')}; got {got}"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return "value", f"{name} must be a whole number; got {got}"
    if kind in {"float_type", "float_parsing"}:
        return "value", f"{name} must be a number; got {got}"
    if kind in {"bool_type", "bool_parsing"}:
        return "value", f"{name} must be true or false; got {got}"
    if kind == "list_type":
        return "structure", f"{name} must be a JSON array; got {got}"
    if kind in {"too_short", "too_long"}:
        low, high = ctx.get("min_length"), ctx.get("max_length")
        bound = f"at least {low}" if kind == "too_short" else f"at most {high}"
        return "value", f"{name} must have {bound} entries"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        limit = next(iter(ctx.values()), "")
        words = {
            "greater_than_equal": "at least",
            "less_than_equal": "at most",
            "greater_than": "more than",
            "less_than": "less than",
        }
        return "value", f"{name} must be {words[kind]} {limit}; got {got}"
    if kind == "value_error":
        # Our own validators raise ValueError with a sentence meant for people.
        return "value", f"{name}: {ctx.get('error', 'is not valid')!s}"
    return "value", f"{name} is not valid here; got {got}"


def _choices(expected: str) -> str:
    """`'a', 'b' or 'c'` (pydantic's rendering of a Literal) as `a, b, c`."""
    return expected.replace("' or '", ", ").replace("'", "")


def _got(value: Any) -> str:
    if isinstance(value, bytes):
        return "a body that is not JSON"
    simple = isinstance(value, str | int | float) and not isinstance(value, bool)
    shown = repr(value) if simple else orjson.dumps(value, default=str).decode()
    return shown if len(shown) <= 60 else shown[:57] + "..."
