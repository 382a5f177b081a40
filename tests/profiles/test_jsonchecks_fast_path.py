"""The fast checks in front of `empty_values` and `json_types` (no FHIRPaths built for a clean document)
must never hide an issue: whenever the full walk finds one, the fast check says "look closer"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.jsonchecks import _json_types_ok, _no_empty_values, empty_values, json_types
from profiles.structure import model_class

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"

# JSON values with the awkward cases often: empty and blank strings, empty containers, nulls,
# numbers where booleans belong and strings where numbers belong.
leaves = st.sampled_from(["", " ", "\t", "x", "true", "5", 0, 1, 5.0, True, False, None, [], {}]) | st.text(max_size=4)
values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["text", "given", "_given", "active", "value", "status", "code", "extension", "resource"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=25,
)
element_names = st.sampled_from(
    ["active", "deceasedBoolean", "multipleBirthInteger", "birthDate", "name", "telecom", "gender", "contained"]
)


def _fixtures() -> list[dict[str, Any]]:
    found = []
    for path in sorted(FIXTURES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("resourceType"), str):
            found.append(data)
    return found


def test_the_fast_checks_pass_the_clean_fixtures_and_agree_with_the_full_walks() -> None:
    message = json.loads((FIXTURES / "sp-referral-message.json").read_text(encoding="utf-8"))
    assert _no_empty_values(message)  # the point of the fast checks: a clean message passes them
    assert _json_types_ok(message, model_class("Bundle"))
    for resource in _fixtures():
        if _no_empty_values(resource):
            assert empty_values(resource, "R") == []
        top = model_class(resource["resourceType"])
        if top is not None:
            assert _json_types_ok(resource, top) == (json_types(resource, "R") == [])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["text", "given", "_given", "name", "status", "note"]), values, max_size=5))
def test_empty_values_fast_check_never_hides_an_issue(resource: dict[str, Any]) -> None:
    if _no_empty_values(resource):
        assert empty_values(resource, "X") == []


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(element_names, values, max_size=5))
def test_json_types_fast_check_says_exactly_whether_the_full_walk_finds_an_issue(body: dict[str, Any]) -> None:
    resource = {"resourceType": "Patient", **body}
    top = model_class("Patient")
    assert _json_types_ok(resource, top) == (json_types(resource, "Patient") == [])
