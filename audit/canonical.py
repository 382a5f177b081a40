"""Canonical JSON: the exact bytes of an audit entry that are hashed into the Merkle tree.

The rule (close to RFC 8785 JCS, but not identical to it):
- UTF-8, no byte-order mark, no insignificant whitespace;
- object members sorted by key, at every depth, by Unicode code point (the same order as
  the UTF-8 bytes; JCS sorts by UTF-16 code units, which differs only above U+FFFF);
- strings written as raw UTF-8; only `"`, `\\` and control characters below U+0020 are
  escaped (orjson's escaping, which never changes between runs);
- keys must be strings; values may be dict, list/tuple, str, int (signed or unsigned
  64-bit), finite float, bool or None. NaN and the infinities are refused (JSON has no
  spelling for them, and orjson would silently write `null`). Datetimes, UUIDs, enums
  without a str/int mixin and every other type are refused: the caller turns them into
  strings first (an AuditEvent's `recorded` is already a FHIR instant string), so that
  the bytes never depend on a library's default formatting.

The hash covers the stored bytes, so a verifier never needs to re-canonicalise; the rule
matters when an entry is written and when a test or an auditor rebuilds the bytes.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SORT_KEYS


class CanonicalJsonError(ValueError):
    """The object cannot be written as canonical JSON (bad key, type or number)."""


def canonical_json(obj: Any) -> bytes:
    """Returns the canonical UTF-8 JSON bytes of `obj`; raises CanonicalJsonError if it has none."""
    _check(obj)
    try:
        return orjson.dumps(obj, option=_OPTIONS)
    except TypeError as exc:  # orjson.JSONEncodeError: integer beyond 64 bits, lone surrogate
        raise CanonicalJsonError(str(exc)) from exc


def _check(obj: Any) -> None:
    """Refuses what orjson would accept but JSON cannot say (the message names the first such value)."""
    if not _acceptable(obj):
        _refuse(obj)


def _acceptable(obj: Any) -> bool:
    """True when `_refuse` would find nothing: the same walk without building a path for every value
    (exact types first, the common case; subclasses go through the isinstance tests)."""
    stack: list[Any] = [obj]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            continue
        if kind is dict:
            for key in value:
                if not isinstance(key, str):
                    return False
            stack.extend(value.values())
            continue
        if kind is list:
            stack.extend(value)
            continue
        if isinstance(value, str | bool | int):
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                return False
            continue
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    return False
            stack.extend(value.values())
            continue
        if isinstance(value, list | tuple):
            stack.extend(value)
            continue
        return False
    return True


def _refuse(obj: Any) -> None:
    """Walks the value once, iteratively, and raises for the first value JSON cannot say."""
    stack: list[tuple[Any, str]] = [(obj, "$")]
    while stack:
        value, path = stack.pop()
        if value is None or isinstance(value, str | bool | int):
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise CanonicalJsonError(f"{path}: {value!r} is not a JSON number")
            continue
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise CanonicalJsonError(f"{path}: object key {key!r} is not a string")
                stack.append((item, f"{path}.{key}"))
            continue
        if isinstance(value, list | tuple):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
            continue
        raise CanonicalJsonError(f"{path}: {type(value).__name__} is not a JSON value (make it a string)")
