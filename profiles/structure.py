"""Structural validation at the edge: JSON parsing and FHIR R4 structure (400 on failure).

    bytes --parse_json--> dict --check_structure--> (resourceType allowed, R4B model validates)

Both raise `FhirError(400)`; check_structure reports every structural error pydantic finds,
one OperationOutcome issue each, with the FHIRPath of the offending element. R4 content is
validated with the `fhir.resources.R4B` classes (the package's top level is R5, which
rejects R4 ServiceRequest and Consent). Terminology, empty values and profile rules are
not checked here: see `jsonchecks` and `referral` (422).

Diagnostics name elements, never the values sent: a value may be a patient identifier.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Collection, Iterator
from typing import Any

import orjson
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from profiles.outcomes import FhirError, Issue

_UTF8_BOM = b"\xef\xbb\xbf"

# loc parts that name pydantic/fhir-core machinery rather than a FHIR element
# (e.g. ('entry', 0, 'root') when an entry is not an object).
_NOT_ELEMENTS = frozenset({"root", "__root__"})
_ELEMENT_NAME = re.compile(r"^_?[A-Za-z][A-Za-z0-9_]*$")
_RESOURCE_NAME = re.compile(r"^[A-Z][A-Za-z]+$")
_CHOICE_LIST = re.compile(r"\[([^\]]*)\]")
_EXPECTED_TYPE = re.compile(r"instance of (\w+), but got type <class '(\w+)'>")

_JSON_KIND = {
    "dict": "a JSON object",
    "list": "a JSON array",
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "bool": "true or false",
    "NoneType": "null",
}

_SPEC_REGEX = re.compile(r"(\w+) value string does not match spec regex")
_FORMAT_HINTS = {
    "dateTime": " (YYYY, YYYY-MM, YYYY-MM-DD, or a date and time with seconds and a time zone, "
    "e.g. 2026-11-20T10:00:00+00:00)",
    "instant": " (a date and time with seconds and a time zone, e.g. 2026-11-20T10:00:00+00:00)",
    "date": " (YYYY, YYYY-MM or YYYY-MM-DD)",
    "time": " (hh:mm:ss)",
    "decimal": " (a JSON number)",
}

_EXPECTED_KIND = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "an integer",
    "float_type": "a number",
    "decimal_type": "a number",
    "dict_type": "a JSON object",
    "model_type": "a JSON object",
    "model_attributes_type": "a JSON object",
}
_PARSING = {
    "bool_parsing": "must be true or false",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "decimal_parsing": "must be a number",
    "date_parsing": "is not a valid FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)",
    "date_from_datetime_parsing": "is not a valid FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)",
    "datetime_parsing": "is not a valid FHIR dateTime",
    "time_parsing": "is not a valid FHIR time (hh:mm:ss)",
    "string_too_long": "is longer than FHIR allows",
}

_model_cache: dict[str, type[Any]] = {}


def parse_json(body: bytes | str) -> dict[str, Any]:
    """Returns the JSON object in `body`; raises FhirError(400, code structure) otherwise.

    A leading UTF-8 byte-order mark is tolerated (some Windows clients send one).
    """
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if body.startswith(_UTF8_BOM):
        body = body[len(_UTF8_BOM) :]
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if exc.lineno else ""
        raise FhirError(400, [Issue("structure", f"The body is not valid JSON: {exc.msg}{where}.")]) from None
    if not isinstance(data, dict):
        kind = _JSON_KIND.get(type(data).__name__, "not an object")
        raise FhirError(
            400, [Issue("structure", f"The body must be a JSON object (a FHIR resource), but it is {kind}.")]
        )
    return data


def model_class(resource_type: str) -> type[Any] | None:
    """Returns the fhir.resources R4B class for a resource type name, or None if R4B has no such resource."""
    cls = _model_cache.get(resource_type)
    if cls is not None:
        return cls
    if not _RESOURCE_NAME.match(resource_type) or resource_type in {"Resource", "DomainResource"}:
        return None
    try:
        module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    except ImportError:
        return None
    cls = getattr(module, resource_type, None)
    # data types (HumanName, Coding, ...) live beside the resources: accept resources only
    if not (isinstance(cls, type) and issubclass(cls, Resource)):
        return None
    _model_cache[resource_type] = cls
    return cls


def check_structure(resource: dict[str, Any], allowed_types: Collection[str]) -> None:
    """Raises FhirError(400) unless `resource` is one of `allowed_types` and valid FHIR R4 structure.

    Every structural error is reported, one issue each, with its FHIRPath expression.
    """
    rt = resource.get("resourceType")
    expected = ", ".join(sorted(allowed_types))
    if not isinstance(rt, str) or rt not in allowed_types:
        said = "is missing" if rt is None else "is not one this endpoint accepts"
        raise FhirError(400, [Issue("invalid", f"resourceType {said}: expected one of {expected}.", "resourceType")])
    cls = model_class(rt)
    if cls is None:
        raise FhirError(400, [Issue("not-supported", f"{rt} is not a FHIR R4 resource type.", "resourceType")])
    try:
        cls.model_validate(resource)
    except ValidationError as exc:
        raise FhirError(400, [_issue_for(err, rt) for err in exc.errors()]) from None
    except RecursionError:
        raise FhirError(400, [Issue("structure", "The resource is nested too deeply to be processed.", rt)]) from None
    except (KeyError, TypeError, ValueError, AttributeError):
        # fhir-core raises plain exceptions (not ValidationError) for a nested resource whose
        # resourceType is unknown or not a string; find and name those, never answer 500.
        issues = list(_bad_nested_types(resource, rt)) or [
            Issue("structure", "The resource could not be read as FHIR R4 structure.", rt)
        ]
        raise FhirError(400, issues) from None
    untyped = list(_untyped_resources(resource, rt))
    if untyped:
        raise FhirError(400, untyped)


def fhirpath(root: str, loc: tuple[int | str, ...]) -> str:
    """Returns the FHIRPath for a pydantic error location, dropping parts that are not FHIR elements.

    ("entry", 0, "resource", "destination", 0, "endpoint") with root "Bundle"
    -> "Bundle.entry[0].resource.destination[0].endpoint".
    A primitive's extension object `_status` is reported as the element itself, `status`.
    """
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "resource_type":
            path += ".resourceType"
        elif part not in _NOT_ELEMENTS and _ELEMENT_NAME.match(part):
            path += "." + (part[1:] if part.startswith("_") else part)
    return path


def _issue_for(err: Any, root: str) -> Issue:
    """Returns one OperationOutcome issue for one pydantic error dict."""
    loc = tuple(err.get("loc") or ())
    kind = err.get("type", "")
    msg = str(err.get("msg", ""))
    value = err.get("input")
    expression = fhirpath(root, loc)
    if "Any of one field value is expected" in msg:
        return _choice_issue(msg, value, expression)
    names = [p for p in loc if isinstance(p, str) and p not in _NOT_ELEMENTS and _ELEMENT_NAME.match(p)]
    name = names[-1] if names else root
    return Issue(_issue_code(kind), f"{expression}: {_plain(kind, msg, name, value, err.get('ctx') or {})}", expression)


def _issue_code(kind: str) -> str:
    if kind.endswith("missing"):
        return "required"
    if kind == "extra_forbidden":
        return "structure"
    return "invalid" if kind.endswith(("_type", "format", "json_invalid")) else "value"


def _plain(kind: str, msg: str, name: str, value: Any, ctx: dict[str, Any]) -> str:
    """Returns the pydantic message in plain English for this element, without echoing the value."""
    got = _JSON_KIND.get(type(value).__name__, "something else")
    if kind.endswith("missing"):
        return f"the required element '{name}' is missing."
    if kind == "extra_forbidden":
        return f"'{name}' is not an element FHIR R4 defines here (check the spelling and nesting)."
    if kind == "list_type":
        return f"'{name}' repeats in FHIR, so it must be a JSON array, but it is {got}."
    if kind == "json_invalid":
        return f"'{name}' must be a JSON object, but it is {got}."
    if kind in _EXPECTED_KIND:
        return f"'{name}' must be {_EXPECTED_KIND[kind]}, but it is {got}."
    if kind in _PARSING:
        return f"'{name}' {_PARSING[kind]}."
    if kind == "fhir-validation-wrong-resource-type":
        return "the resourceType does not match the resource expected here."
    found = _EXPECTED_TYPE.search(msg)
    if found:
        return f"'{name}' must be a single {found.group(1)} (a JSON object), but it is {got}."
    if kind == "string_pattern_mismatch":
        if isinstance(value, str) and not value.strip():
            return f"'{name}' is empty or only whitespace: FHIR JSON does not allow empty values."
        return f"'{name}' does not have the form its FHIR data type requires (pattern {ctx.get('pattern')})."
    if kind == "string_too_short" and value == "":
        return f"'{name}' is empty: FHIR JSON does not allow empty values."
    spec = _SPEC_REGEX.search(msg)
    if spec:
        fhir_type = spec.group(1)[:1].lower() + spec.group(1)[1:]
        hint = _FORMAT_HINTS.get(fhir_type, "")
        return f"'{name}' is not a valid FHIR {fhir_type}{hint}."
    text = msg.removeprefix("Value error, ").replace("Input should be", "should be")
    return f"'{name}': {text[:1].lower()}{text[1:]}".rstrip(".") + "."


def _choice_issue(msg: str, value: Any, expression: str) -> Issue:
    """A choice element ([x]) given in more than one form, e.g. occurrenceDateTime and occurrencePeriod."""
    listed = _CHOICE_LIST.search(msg)
    options = re.findall(r"'(\w+)'", listed.group(1)) if listed else []
    given = [o for o in options if isinstance(value, dict) and o in value] or options
    base = _common_prefix(options)
    if base:
        expression = f"{expression}.{base}"
    text = f"{expression}: a choice element may be given in one form only, but {', '.join(given)} were all given."
    return Issue("structure", text, expression)


def _common_prefix(names: list[str]) -> str:
    """Returns the choice element's base name: occurrenceDateTime, occurrencePeriod -> occurrence."""
    if not names:
        return ""
    first, last = min(names), max(names)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    # the base ends where every option's type name (capitalised) begins: valueDate / valueDateTime -> value
    while n > 0 and not all(o[n : n + 1].isupper() for o in names):
        n -= 1
    return first[:n]


def _untyped_resources(resource: dict[str, Any], root: str) -> Iterator[Issue]:
    """Yields an issue for each contained or Bundle entry resource that has no resourceType.

    fhir-core validates such an object as the abstract Resource and accepts it; FHIR JSON
    requires resourceType on every resource (R4 JSON §2.6.1).
    """
    places: list[tuple[Any, str]] = [(resource, root)]
    entries = resource.get("entry") if resource.get("resourceType") == "Bundle" else None
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if isinstance(entry, dict) and "resource" in entry:
            places.append((entry["resource"], f"{root}.entry[{i}].resource"))
    for node, path in places:
        if path != root and isinstance(node, dict) and "resourceType" not in node:
            yield Issue("required", f"{path}: the resource has no resourceType.", f"{path}.resourceType")
        contained = node.get("contained") if isinstance(node, dict) else None
        for j, inner in enumerate(contained if isinstance(contained, list) else []):
            if isinstance(inner, dict) and "resourceType" not in inner:
                where = f"{path}.contained[{j}]"
                yield Issue("required", f"{where}: the resource has no resourceType.", f"{where}.resourceType")


def _bad_nested_types(resource: dict[str, Any], root: str) -> Iterator[Issue]:
    """Yields an issue for every nested object whose resourceType is not an R4 resource type."""
    stack: list[tuple[Any, str]] = [(resource, root)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if node is not resource and "resourceType" in node:
                rt = node["resourceType"]
                if not isinstance(rt, str) or model_class(rt) is None:
                    yield Issue(
                        "structure",
                        f"{path}: resourceType is not a FHIR R4 resource type.",
                        f"{path}.resourceType",
                    )
            stack.extend((v, f"{path}.{k}") for k, v in reversed(list(node.items())) if k != "resourceType")
        elif isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(node))))
