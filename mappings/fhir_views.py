"""Partial views of a resource a FHIR search may ask for (R4 §3.1.1.5.7 `_summary`, §3.1.1.5.8
`_elements`). Pure.

Which elements are "summary" and which are mandatory comes from the R4 StructureDefinitions as
fhir.resources carries them (`summary_element_property`, `element_required`). A subsetted view is
tagged SUBSETTED (v3-ObservationValue), as the spec requires, so nobody stores it as the whole.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from fhir.resources.R4B import get_fhir_model_class

Summary = Literal["true", "text", "data", "false"]
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _element_flags(resource_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """Returns (summary elements, mandatory elements) of a resource type, by their JSON names."""
    model = get_fhir_model_class(resource_type)
    summary, mandatory = set(), set()
    for field in model.model_fields.values():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        name = field.alias or ""
        if extra.get("summary_element_property"):
            summary.add(name)
        if extra.get("element_required") or field.is_required():  # required primitives / complex elements
            mandatory.add(name)
    return frozenset(summary), frozenset(mandatory)


def summary_elements(resource_type: str) -> frozenset[str]:
    return _element_flags(resource_type)[0]


def _subsetted(resource: dict[str, Any], keep: set[str] | frozenset[str]) -> dict[str, Any]:
    out = {k: v for k, v in resource.items() if k in keep or k in _ALWAYS}
    if len(out) == len(resource):
        return resource
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    out["meta"] = meta
    return out


def summary_view(resource: dict[str, Any], summary: Summary) -> dict[str, Any]:
    """Returns the `_summary` view of a resource: true = the summary elements, text = text and the
    mandatory elements, data = all but text, false = the whole resource."""
    if summary == "false":
        return resource
    rtype = resource["resourceType"]
    summary_set, mandatory = _element_flags(rtype)
    if summary == "true":
        return _subsetted(resource, summary_set | mandatory)
    if summary == "text":
        return _subsetted(resource, {"text", *mandatory})
    return _subsetted(resource, {k for k in resource if k != "text"})


def elements_view(resource: dict[str, Any], elements: frozenset[str]) -> dict[str, Any]:
    """Returns the `_elements` view: the named top-level elements and the mandatory ones."""
    return _subsetted(resource, elements | _element_flags(resource["resourceType"])[1])
