"""audit/canonical.py: one value, one byte string, whatever order or depth it was built in."""

from __future__ import annotations

import enum
import json
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.canonical import CanonicalJsonError, canonical_json


def test_keys_are_sorted_at_every_depth_without_whitespace() -> None:
    value = {"b": {"z": 1, "a": [{"y": True, "x": None}]}, "a": "first"}
    assert canonical_json(value) == b'{"a":"first","b":{"a":[{"x":null,"y":true}],"z":1}}'


def test_insertion_order_does_not_change_the_bytes() -> None:
    one = {"resourceType": "AuditEvent", "action": "R", "agent": [{"who": {"display": "x"}, "requestor": False}]}
    two = {"agent": [{"requestor": False, "who": {"display": "x"}}], "action": "R", "resourceType": "AuditEvent"}
    assert canonical_json(one) == canonical_json(two)


def test_unicode_is_written_as_raw_utf8_and_is_stable() -> None:
    value = {"name": "Zoë Ó Sé — 東京 😀", "é": 1, "e": 2}
    out = canonical_json(value)
    assert out == '{"e":2,"name":"Zoë Ó Sé — 東京 😀","é":1}'.encode()
    assert canonical_json(json.loads(out)) == out


def test_keys_sort_by_code_point_including_astral_characters() -> None:
    # U+FFFF sorts before U+1F600 by code point (and by UTF-8 bytes); JCS's UTF-16 order would not.
    assert canonical_json({"\U0001f600": 2, "\uffff": 1}) == '{"\uffff":1,"\U0001f600":2}'.encode()


def test_control_characters_quotes_and_backslashes_are_escaped() -> None:
    assert canonical_json({"k": 'a"b\\c\n\x01'}) == b'{"k":"a\\"b\\\\c\\n\\u0001"}'


def test_tuples_are_written_as_arrays() -> None:
    assert canonical_json({"a": (1, 2)}) == canonical_json({"a": [1, 2]}) == b'{"a":[1,2]}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused_not_written_as_null(bad: float) -> None:
    with pytest.raises(CanonicalJsonError, match="not a JSON number"):
        canonical_json({"outer": [{"score": bad}]})


def test_non_string_keys_are_refused_even_when_nested() -> None:
    with pytest.raises(CanonicalJsonError, match="not a string"):
        canonical_json({"a": {"b": {1: "x"}}})


@pytest.mark.parametrize(
    "bad",
    [datetime(2024, 5, 1, tzinfo=UTC), uuid.UUID(int=1), b"bytes", {1, 2}, enum.Enum("E", "A").A],
    ids=["datetime", "uuid", "bytes", "set", "enum"],
)
def test_values_json_cannot_spell_are_refused(bad: object) -> None:
    with pytest.raises(CanonicalJsonError, match="not a JSON value"):
        canonical_json({"recorded": bad})


def test_integers_beyond_64_bits_and_lone_surrogates_are_refused() -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_json({"n": 2**70})
    with pytest.raises(CanonicalJsonError):
        canonical_json({"s": "\ud800"})


def test_error_is_a_value_error() -> None:
    assert issubclass(CanonicalJsonError, ValueError)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_canonical_bytes_round_trip_through_a_json_parser(value: object) -> None:
    out = canonical_json(value)
    assert canonical_json(json.loads(out)) == out
    assert b"\n" not in out and b": " not in out


@given(st.dictionaries(st.text(max_size=6), st.integers(-(2**63), 2**63 - 1), max_size=8))
def test_any_permutation_of_keys_gives_the_same_bytes(value: dict[str, int]) -> None:
    reversed_order = dict(reversed(list(value.items())))
    assert canonical_json(reversed_order) == canonical_json(value)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=2) | st.integers(), children, max_size=3)
    ),
    max_leaves=12,
)


@given(json_like)
def test_the_fast_check_accepts_exactly_what_the_path_walk_accepts(value: object) -> None:
    from audit.canonical import _acceptable, _refuse

    try:
        _refuse(value)
        refused = False
    except CanonicalJsonError:
        refused = True
    assert _acceptable(value) is not refused


class _Colour(enum.StrEnum):
    RED = "red"


class _Plain(enum.Enum):
    RED = "red"


class _Dict(dict):  # type: ignore[type-arg]
    """A dict subclass: canonical JSON must treat it as the dict it is."""


@pytest.mark.parametrize(
    "value",
    [_Colour.RED, {"k": _Colour.RED}, _Plain.RED, [_Plain.RED], _Dict(a=1), _Dict({1: 2}), (1, 2.5), float("nan")],
)
def test_the_fast_check_agrees_on_subclasses_and_odd_types(value: object) -> None:
    from audit.canonical import _acceptable, _refuse

    try:
        _refuse(value)
        refused = False
    except CanonicalJsonError:
        refused = True
    assert _acceptable(value) is not refused
