"""FHIR JSON rules fhir.resources lets through: empty values, nulls, and lax primitive types."""

from __future__ import annotations

from profiles.jsonchecks import empty_values, json_types
from profiles.structure import check_structure
from tests.profiles.fhir_files import load


def expressions(issues):
    return [i.expression for i in issues]


def test_our_examples_have_no_empty_values_or_wrong_json_types():
    for name, root in (("sp-referral-message.json", "Bundle"), ("sp-servicerequest.json", "ServiceRequest")):
        resource = load(name)
        assert empty_values(resource, root) == []
        assert json_types(resource, root) == []


def test_empty_string_array_object_and_whitespace_are_each_named_in_document_order():
    sr = load("sp-servicerequest.json")
    sr["note"] = [{"text": ""}]
    sr["category"] = []
    sr["code"]["text"] = "   "
    sr["reasonCode"] = [{}]
    check_structure(sr, {"ServiceRequest"})  # the model accepts all four
    issues = empty_values(sr, "ServiceRequest")
    assert expressions(issues) == [
        "ServiceRequest.category",
        "ServiceRequest.code.text",
        "ServiceRequest.reasonCode[0]",
        "ServiceRequest.note[0].text",
    ]
    assert {i.code for i in issues} == {"invalid"}
    assert "empty array" in issues[0].diagnostics
    assert "only whitespace" in issues[1].diagnostics
    assert "empty object" in issues[2].diagnostics
    assert "empty string" in issues[3].diagnostics


def test_nested_paths_in_a_bundle():
    bundle = load("sp-referral-message.json")
    bundle["entry"][2]["resource"]["name"][0]["given"] = []
    assert expressions(empty_values(bundle, "Bundle")) == ["Bundle.entry[2].resource.name[0].given"]


def test_null_is_refused_except_where_aligned_with_a_primitive_extension_array():
    patient = {
        "resourceType": "Patient",
        "gender": None,
        "name": [
            {"given": ["Maureen", None], "_given": [None, {"extension": [{"url": "u", "valueString": "v"}]}]},
            {"given": ["Jo", None]},
        ],
    }
    assert expressions(empty_values(patient, "Patient")) == ["Patient.gender", "Patient.name[1].given[1]"]


def test_primitive_extension_object_is_reported_as_its_element():
    sr = load("sp-servicerequest.json")
    sr["_status"] = {}
    assert expressions(empty_values(sr, "ServiceRequest")) == ["ServiceRequest.status"]


def test_lax_coercions_the_model_accepts_are_named():
    patient = {
        "resourceType": "Patient",
        "active": "true",
        "multipleBirthInteger": "2",
        "extension": [
            {"url": "https://example.org/a", "valueDecimal": "1.5"},
            {"url": "https://example.org/b", "valueInteger": 5.0},
            {"url": "https://example.org/c", "valueBoolean": 1},
            {"url": "https://example.org/d", "valueInteger": True},
        ],
        "contained": [
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "score"},
                "valueQuantity": {"value": "3"},
            }
        ],
    }
    check_structure(patient, {"Patient"})  # fhir.resources coerces every one of these
    assert expressions(json_types(patient, "Patient")) == [
        "Patient.active",
        "Patient.multipleBirthInteger",
        "Patient.extension[0].valueDecimal",
        "Patient.extension[1].valueInteger",
        "Patient.extension[2].valueBoolean",
        "Patient.extension[3].valueInteger",
        "Patient.contained[0].valueQuantity.value",
    ]


def test_proper_json_numbers_and_booleans_pass():
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": 3},
        "component": [{"code": {"text": "y"}, "valueBoolean": False}],
    }
    assert json_types(observation, "Observation") == []
