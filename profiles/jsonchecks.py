"""FHIR JSON rules that fhir.resources does not enforce (422 when broken).

R4 JSON representation (http://hl7.org/fhir/R4/json.html):
- "There SHALL be no empty elements": no empty strings, arrays or objects, and no nulls
  except inside an array of primitives that is aligned with its `_name` extension array.
  fhir.resources accepts `"text": ""`, `"category": []`, `"code": {}` and `"gender": null`.
  A string of only whitespace is reported too: it carries no value either.
- booleans are JSON `true`/`false` and integer/decimal are JSON numbers. fhir.resources
  (pydantic lax mode) coerces `"true"`, `"yes"`, `1`, `"5"` and `5.0`; `json_types` finds those.
  date, dateTime, instant and time are JSON strings: pydantic also reads a number there as a Unix
  timestamp (`"dateTime": 5`), which `json_types` reports too.

Both walks are iterative: orjson accepts nesting up to 1024 levels, deeper than Python's
default recursion limit.
"""

from __future__ import annotations

import datetime
import decimal
import typing
from collections.abc import Iterator
from functools import cache
from types import NoneType, UnionType
from typing import Any

from profiles.outcomes import Issue
from profiles.structure import model_class


def empty_values(resource: dict[str, Any], root: str) -> list[Issue]:
    """Returns one issue (code invalid) per empty string, array, object, null or whitespace-only string.

    Issues come in document order.
    """
    if _no_empty_values(resource):
        return []  # the usual case, found without building a FHIRPath for every element
    issues: list[Issue] = []
    # depth-first without recursion: a stack of (remaining children, FHIRPath, nulls allowed)
    stack: list[tuple[Iterator[tuple[Any, Any, Any]], str, bool]] = [(_members(resource), root, False)]
    while stack:
        children, path, nulls_allowed = stack[-1]
        for key, value, parent in children:
            if value is None:
                if not nulls_allowed:
                    where = _child(path, key)
                    issues.append(
                        Issue(
                            "invalid",
                            f"{where} is null: FHIR JSON does not allow null here; leave the element out.",
                            where,
                        )
                    )
                continue
            kind = type(value)
            if kind is str:
                if not value or value.isspace():
                    where = _child(path, key)
                    what = "an empty string" if not value else "only whitespace"
                    issues.append(Issue("invalid", f"{where} is {what}: {_NO_EMPTY}", where))
            elif kind is dict or kind is list:
                where = _child(path, key)
                if not value:
                    what = "an empty object" if kind is dict else "an empty array"
                    issues.append(Issue("invalid", f"{where} is {what}: {_NO_EMPTY}", where))
                elif kind is dict:
                    stack.append((_members(value), where, False))
                    break
                else:
                    aligned = isinstance(key, str) and _has_partner(parent, key)
                    stack.append((((i, v, None) for i, v in enumerate(value)), where, aligned))
                    break
        else:
            stack.pop()
    return issues


def _no_empty_values(resource: dict[str, Any]) -> bool:
    """True when no value below `resource` is null, empty or only whitespace (then `empty_values` finds nothing).

    False means "look closer", not "invalid": `empty_values` allows some nulls and ignores resourceType.
    """
    stack: list[dict[str, Any] | list[Any]] = [resource]
    while stack:
        node = stack.pop()
        for value in node.values() if isinstance(node, dict) else node:
            kind = type(value)
            if kind is str:
                if not value or value.isspace():
                    return False
            elif kind is dict or kind is list:
                if not value:
                    return False
                stack.append(value)
            elif value is None:
                return False
    return True


def json_types(resource: dict[str, Any], root: str) -> list[Issue]:
    """Returns one issue (code invalid) per boolean, integer or decimal not given as its JSON type.

    Issues come in document order.
    """
    rt = resource.get("resourceType")
    top = model_class(rt) if isinstance(rt, str) else None
    if top is None or _json_types_ok(resource, top):
        return []  # the usual case, found without building a FHIRPath for every element
    issues: list[Issue] = []
    # (value, kind, child model, FHIRPath)
    stack: list[tuple[Any, str, Any, str]] = [(resource, "complex", top, root)]
    while stack:
        value, kind, cls, path = stack.pop()
        rule = _JSON_TYPE_RULES.get(kind)
        if rule:
            if value is not None and not rule[0](value):
                issues.append(Issue("invalid", f"{path}: must be {rule[1]} in FHIR JSON.", path))
            continue
        if not isinstance(value, dict):
            continue
        if kind == "resource":
            rt = value.get("resourceType")
            cls = model_class(rt) if isinstance(rt, str) else None
            if cls is None:
                continue
        specs = _field_specs(cls)
        children: list[tuple[Any, str, Any, str]] = []
        for key, item in value.items():
            spec = specs.get(key)
            if spec is None:
                continue
            child_kind, repeats, child_cls = spec
            if repeats and isinstance(item, list):
                children.extend((v, child_kind, child_cls, f"{path}.{key}[{i}]") for i, v in enumerate(item))
            else:
                children.append((item, child_kind, child_cls, f"{path}.{key}"))
        stack.extend(reversed(children))
    return issues


def _json_types_ok(resource: dict[str, Any], top: Any) -> bool:
    """True when `json_types` would find nothing: its walk without the FHIRPaths, stopping at the first wrong type."""
    stack: list[tuple[Any, str, Any]] = [(resource, "complex", top)]
    while stack:
        value, kind, cls = stack.pop()
        rule = _JSON_TYPE_RULES.get(kind)
        if rule:
            if value is not None and not rule[0](value):
                return False
            continue
        if not isinstance(value, dict):
            continue
        if kind == "resource":
            rt = value.get("resourceType")
            cls = model_class(rt) if isinstance(rt, str) else None
            if cls is None:
                continue
        specs = _field_specs(cls)
        for key, item in value.items():
            spec = specs.get(key)
            if spec is None:
                continue
            child_kind, repeats, child_cls = spec
            if repeats and isinstance(item, list):
                stack.extend((v, child_kind, child_cls) for v in item)
            else:
                stack.append((item, child_kind, child_cls))
    return True


def _has_partner(node: dict[str, Any], key: str) -> bool:
    """True if `key` has a parallel `_key` array (or is one): R4 JSON §2.6.2 lets such arrays hold
    nulls to keep values and their extensions aligned, e.g. "given": ["Alex", null] with
    "_given": [null, {"extension": [...]}]."""
    partner = key[1:] if key.startswith("_") else "_" + key
    return isinstance(node.get(partner), list)


def _members(node: dict[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    return ((k, v, node) for k, v in node.items() if k != "resourceType")


def _child(path: str, key: str | int) -> str:
    """FHIRPath of a child; `_status` (the id/extensions of primitive `status`) is `status` in FHIRPath."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key[1:] if key.startswith('_') and len(key) > 1 else key}"


_NO_EMPTY = "FHIR JSON does not allow empty values; leave the element out or give it a value."
_JSON_TYPE_RULES = {
    "bool": (lambda v: v is True or v is False, "true or false"),
    "int": (lambda v: type(v) is int, "a whole JSON number (not a string, boolean or decimal)"),
    "decimal": (lambda v: type(v) in (int, float), "a JSON number (not a string or boolean)"),
    "temporal": (lambda v: type(v) is str, "a string (FHIR dates and times are not JSON numbers)"),
}
_TEMPORAL = (datetime.datetime, datetime.date, datetime.time)


@cache
def _field_specs(cls: type[Any]) -> dict[str, tuple[str, bool, Any]]:
    """Returns {json name: (kind, repeats, child model)} for the elements of a fhir.resources model.

    kind is bool / int / decimal / temporal (JSON type checked), complex (walk into child), resource
    (walk into the class its resourceType names); other primitives are not listed.
    """
    specs: dict[str, tuple[str, bool, Any]] = {}
    for name, field in cls.model_fields.items():
        alias = field.alias or name
        if alias.startswith("_") or name == "fhir_comments":
            continue
        kind, repeats, child = _classify(field.annotation)
        if kind:
            specs[alias] = (kind, repeats, child)
    return specs


def _classify(annotation: Any) -> tuple[str | None, bool, Any]:
    repeats = False
    tp = annotation
    while True:
        origin = typing.get_origin(tp)
        if origin in (typing.Union, UnionType):
            args = [a for a in typing.get_args(tp) if a is not NoneType]
            if len(args) != 1:
                return None, False, None
            tp = args[0]
        elif origin is list:
            repeats = True
            tp = typing.get_args(tp)[0]
        elif origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        else:
            break
    if tp is bool:
        return "bool", repeats, None
    if tp is int:
        return "int", repeats, None
    if tp is decimal.Decimal:
        return "decimal", repeats, None
    if tp in _TEMPORAL:
        return "temporal", repeats, None
    klass = getattr(tp, "get_model_klass", None)
    if klass is None or tp.__name__ == "FHIRPrimitiveExtensionType":
        return None, False, None
    if tp.__name__ == "ResourceType":
        return "resource", repeats, None
    return "complex", repeats, klass()
