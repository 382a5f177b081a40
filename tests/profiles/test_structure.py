"""JSON parsing and FHIR R4 structure: 400 with every structural error named by FHIRPath."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.outcomes import FhirError
from profiles.structure import check_structure, fhirpath, parse_json
from tests.profiles.fhir_files import load

REFERRAL_TYPES = {"Bundle", "ServiceRequest"}


def structure_issues(resource, allowed=REFERRAL_TYPES):
    with pytest.raises(FhirError) as caught:
        check_structure(resource, allowed)
    assert caught.value.status == 400
    return caught.value.issues


# --- parse_json --------------------------------------------------------------------------


def test_object_is_returned():
    assert parse_json(b'{"resourceType": "Patient"}') == {"resourceType": "Patient"}


def test_truncated_json_names_line_and_column():
    with pytest.raises(FhirError) as caught:
        parse_json(b'{"resourceType": "Bundle",\n "entry": [')
    assert caught.value.status == 400
    (issue,) = caught.value.issues
    assert issue.code == "structure"
    assert "line 2" in issue.diagnostics and "column" in issue.diagnostics


@pytest.mark.parametrize(("body", "said"), [(b"[1, 2]", "array"), (b'"x"', "string"), (b"5", "number")])
def test_json_that_is_not_an_object_is_refused(body, said):
    with pytest.raises(FhirError) as caught:
        parse_json(body)
    assert caught.value.issues[0].code == "structure"
    assert said in caught.value.issues[0].diagnostics


@pytest.mark.parametrize("body", [b"", b"\xff\xfe", b'{"a": 1} {"b": 2}', b"<xml/>"])
def test_not_json_is_refused(body):
    with pytest.raises(FhirError) as caught:
        parse_json(body)
    assert caught.value.status == 400


def test_utf8_byte_order_mark_is_tolerated():
    assert parse_json(b'\xef\xbb\xbf{"resourceType": "Patient"}') == {"resourceType": "Patient"}


# --- resourceType ------------------------------------------------------------------------


def test_missing_resource_type_is_named():
    (issue,) = structure_issues({"status": "active"})
    assert (issue.code, issue.expression) == ("invalid", "resourceType")
    assert "Bundle, ServiceRequest" in issue.diagnostics


def test_resource_type_not_allowed_here_is_named():
    (issue,) = structure_issues({"resourceType": "Patient"})
    assert (issue.code, issue.expression) == ("invalid", "resourceType")
    assert "expected one of" in issue.diagnostics


def test_resource_type_that_is_not_a_string_is_refused():
    (issue,) = structure_issues({"resourceType": ["Bundle"]})
    assert issue.expression == "resourceType"


def test_unknown_nested_resource_types_are_named_not_crashed_on():
    bundle = {
        "resourceType": "Bundle",
        "type": "message",
        "entry": [{"resource": {"resourceType": "Banana"}}, {"resource": {"resourceType": 5}}],
    }
    issues = structure_issues(bundle)
    assert [i.expression for i in issues] == [
        "Bundle.entry[0].resource.resourceType",
        "Bundle.entry[1].resource.resourceType",
    ]


def test_entry_resource_without_resource_type_is_refused():
    bundle = {"resourceType": "Bundle", "type": "message", "entry": [{"resource": {"id": "x"}}]}
    (issue,) = structure_issues(bundle)
    assert (issue.code, issue.expression) == ("required", "Bundle.entry[0].resource.resourceType")


def test_contained_resource_without_resource_type_is_refused():
    sr = load("sp-servicerequest.json")
    sr["contained"] = [{"id": "p1"}]
    (issue,) = structure_issues(sr)
    assert issue.expression == "ServiceRequest.contained[0].resourceType"


# --- the shared fixtures -----------------------------------------------------------------


def test_older_111_to_ed_draft_reports_all_six_structural_errors():
    issues = structure_issues(load("bars-111-to-ed-servicerequest.json"))
    assert [i.expression for i in issues] == [
        "Bundle.entry[0].resource.destination[0].endpoint",
        "Bundle.entry[14].resource.basedOn",
        "Bundle.entry[15].resource.note",
        "Bundle.entry[18].resource.note",
        "Bundle.entry[19].resource.note",
        "Bundle.entry[20].resource.basedOn",
    ]
    assert issues[0].code == "required"
    assert "missing" in issues[0].diagnostics
    assert "must be a JSON array" in issues[1].diagnostics


@pytest.mark.parametrize("name", ["bars-servicerequest-read.json", "bars-api_servicerequest_GET-success.json"])
def test_based_on_given_as_an_object_is_named(name):
    issues = structure_issues(load(name))
    assert [i.expression for i in issues] == ["ServiceRequest.basedOn", "ServiceRequest.PatientInstruction"]
    assert "not an element FHIR R4 defines" in issues[1].diagnostics


@pytest.mark.parametrize(
    "name",
    ["bars-api_messagedefinition_servicerequest-request.json", "bars-messagedefinition-servicerequest-request.json"],
)
def test_use_context_code_given_as_a_list_names_the_element_not_root(name):
    (issue,) = structure_issues(load(name))
    assert issue.expression == "Bundle.entry[0].resource.useContext[0].code"
    assert "Coding" in issue.diagnostics and "root" not in issue.diagnostics


# --- pydantic loc to FHIRPath -------------------------------------------------------------


@pytest.mark.parametrize(
    ("root", "loc", "path"),
    [
        (
            "Bundle",
            ("entry", 0, "resource", "destination", 0, "endpoint"),
            "Bundle.entry[0].resource.destination[0].endpoint",
        ),
        ("ServiceRequest", ("basedOn",), "ServiceRequest.basedOn"),
        (
            "Bundle",
            ("entry", 0, "resource", "useContext", 0, "code", "root"),
            "Bundle.entry[0].resource.useContext[0].code",
        ),
        ("Patient", ("name", 0, "_given", 1), "Patient.name[0].given[1]"),
        ("Patient", ("contained", 0, "function-after[validate(), str]", "gender"), "Patient.contained[0].gender"),
        ("ServiceRequest", (), "ServiceRequest"),
    ],
)
def test_loc_becomes_fhirpath_of_a_real_element(root, loc, path):
    assert fhirpath(root, loc) == path


@pytest.mark.parametrize(
    ("change", "expression", "words"),
    [
        ({"status": 5}, "ServiceRequest.status", "must be a string"),
        ({"authoredOn": "2026-11-20T10:00"}, "ServiceRequest.authoredOn", "not a valid FHIR dateTime"),
        ({"code": "871731000000106"}, "ServiceRequest.code", "must be a JSON object"),
        (
            {"occurrenceDateTime": "2026-12-01", "occurrencePeriod": {"start": "2026-12-01"}},
            "ServiceRequest.occurrence",
            "one form only",
        ),
        ({"subject": {"reference": ""}}, "ServiceRequest.subject.reference", "empty"),
        ({"id": "not an id!"}, "ServiceRequest.id", "form"),
        ({"statusReason": {"text": "x"}}, "ServiceRequest.statusReason", "not an element"),
    ],
)
def test_structural_errors_are_in_plain_english(change, expression, words):
    sr = load("sp-servicerequest.json")
    sr.update(change)
    (issue,) = structure_issues(sr)
    assert issue.expression == expression
    assert words in issue.diagnostics


def test_diagnostics_do_not_echo_the_values_sent():
    sr = load("sp-servicerequest.json")
    sr["subject"]["identifier"]["value"] = 9912003888  # a number where a string belongs
    (issue,) = structure_issues(sr)
    assert issue.expression == "ServiceRequest.subject.identifier.value"
    assert "9912003888" not in issue.diagnostics


def test_nesting_too_deep_for_the_model_is_a_400_not_a_crash():
    extension = {"url": "https://example.org/x", "valueString": "y"}
    for _ in range(300):
        extension = {"url": "https://example.org/x", "extension": [extension]}
    sr = load("sp-servicerequest.json")
    sr["extension"] = [extension]
    (issue,) = structure_issues(sr)
    assert issue.code == "structure"


@pytest.mark.parametrize("name", ["sp-referral-message.json", "sp-servicerequest.json"])
def test_our_examples_are_valid_structure(name):
    resource = load(name)
    check_structure(resource, REFERRAL_TYPES)


def test_validation_does_not_change_the_dict_that_is_stored():
    bundle = load("sp-referral-message.json")
    before = json.dumps(bundle, sort_keys=True)
    check_structure(bundle, REFERRAL_TYPES)
    assert json.dumps(bundle, sort_keys=True) == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["", " ", "x", "Patient", "2026-01-01"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceType",
                    "resource",
                    "entry",
                    "status",
                    "subject",
                    "code",
                    "coding",
                    "contained",
                    "reference",
                    "identifier",
                    "value",
                    "system",
                    "_status",
                    "extension",
                    "url",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["Bundle", "ServiceRequest"]), json_values)
def test_any_json_gives_a_verdict_or_a_fhir_error_never_another_exception(rt, body):
    resource = {"resourceType": rt, **(body if isinstance(body, dict) else {"x": body})}
    resource["resourceType"] = rt
    try:
        check_structure(resource, REFERRAL_TYPES)
    except FhirError as error:
        assert error.status == 400 and error.issues
