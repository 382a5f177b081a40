"""Search parameters as data: for each resource type, what each parameter indexes.

A token parameter yields (system, value) pairs from the resource JSON; a date parameter is
served from the `date` column. `name` is what a client writes (`patient:identifier` is the
`:identifier` modifier on the `patient` reference parameter, FHIR R4 §3.1.1.4.4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

Extractor = Callable[[dict[str, Any]], Iterable[tuple[str, str]]]


@dataclass(frozen=True)
class SearchParam:
    name: str
    type: Literal["token", "reference", "date"]
    documentation: str
    extract: Extractor | None = None  # None for date parameters (served from the `date` column)


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def identifiers(element: str) -> Extractor:
    def extract(resource: dict[str, Any]) -> Iterator[tuple[str, str]]:
        for ident in _items(resource.get(element)):
            if isinstance(ident, dict) and ident.get("value"):
                yield ident.get("system", ""), str(ident["value"])

    return extract


def codings(element: str) -> Extractor:
    def extract(resource: dict[str, Any]) -> Iterator[tuple[str, str]]:
        for concept in _items(resource.get(element)):
            for coding in _items(concept.get("coding") if isinstance(concept, dict) else None):
                if coding.get("code"):
                    yield coding.get("system", ""), coding["code"]

    return extract


def code(element: str) -> Extractor:
    def extract(resource: dict[str, Any]) -> Iterator[tuple[str, str]]:
        value = resource.get(element)
        if isinstance(value, str) and value:
            yield "", value

    return extract


def references(element: str) -> Extractor:
    def extract(resource: dict[str, Any]) -> Iterator[tuple[str, str]]:
        for ref in _items(resource.get(element)):
            if isinstance(ref, dict) and ref.get("reference"):
                yield "", ref["reference"]

    return extract


def reference_identifiers(element: str) -> Extractor:
    def extract(resource: dict[str, Any]) -> Iterator[tuple[str, str]]:
        for ref in _items(resource.get(element)):
            ident = ref.get("identifier") if isinstance(ref, dict) else None
            if isinstance(ident, dict) and ident.get("value"):
                yield ident.get("system", ""), str(ident["value"])

    return extract


def consent_actors(resource: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Consent.provision.actor.reference identifiers and references (search parameter `actor`)."""
    for actor in _items((resource.get("provision") or {}).get("actor")):
        ref = actor.get("reference") or {}
        ident = ref.get("identifier") or {}
        if ident.get("value"):
            yield ident.get("system", ""), str(ident["value"])
        if ref.get("reference"):
            yield "", ref["reference"]


def _subject_params(element: str) -> list[SearchParam]:
    return [
        SearchParam("identifier", "token", "Business identifier", identifiers("identifier")),
        SearchParam("patient", "reference", "The Patient", references(element)),
        SearchParam("patient:identifier", "token", "Patient NHS number (system|value)", reference_identifiers(element)),
    ]


def _p(name: str, kind: Literal["token", "reference", "date"], doc: str, extract: Extractor | None = None):
    return SearchParam(name, kind, doc, extract)


SEARCH_PARAMS: dict[str, dict[str, SearchParam]] = {
    rtype: {p.name: p for p in params}
    for rtype, params in {
        "ServiceRequest": [
            _p("identifier", "token", "Business identifier of the referral", identifiers("identifier")),
            _p(
                "patient:identifier",
                "token",
                "Patient NHS number (system|value)",
                reference_identifiers("subject"),
            ),
            _p("patient", "reference", "The Patient the referral is for", references("subject")),
            _p("subject", "reference", "Who the referral is for (the Patient)", references("subject")),
            _p("status", "token", "active | revoked | completed | ...", code("status")),
            _p(
                "performer:identifier",
                "token",
                "ODS code of the addressed host",
                reference_identifiers("performer"),
            ),
            _p("code", "token", "What is requested (SNOMED CT)", codings("code")),
            _p("authored", "date", "When the referral was authored (ge, le, gt, lt, eq)"),
        ],
        "Patient": [
            _p("identifier", "token", "NHS number (system|value)", identifiers("identifier")),
        ],
        "Task": [
            _p("focus", "reference", "The ServiceRequest the Task is about", references("focus")),
            _p(
                "status",
                "token",
                "requested | accepted | rejected | in-progress | completed | ...",
                code("status"),
            ),
            _p(
                "owner:identifier",
                "token",
                "The VCSE host that owns the Task",
                reference_identifiers("owner"),
            ),
            _p(
                "patient:identifier",
                "token",
                "Patient NHS number (system|value)",
                reference_identifiers("for"),
            ),
            _p("identifier", "token", "Business identifier", identifiers("identifier")),
        ],
        "Observation": [
            _p("based-on", "reference", "The ServiceRequest the outcome answers", references("basedOn")),
            _p(
                "patient:identifier",
                "token",
                "Patient NHS number (system|value)",
                reference_identifiers("subject"),
            ),
            _p("patient", "reference", "The Patient", references("subject")),
            _p("code", "token", "The measure (SNOMED CT / LOINC / local)", codings("code")),
            _p("category", "token", "survey | social-history", codings("category")),
            _p("identifier", "token", "Submission identifier", identifiers("identifier")),
            _p("date", "date", "When the outcome was recorded (ge, le, gt, lt, eq)"),
        ],
        "Consent": [
            _p(
                "patient:identifier",
                "token",
                "Patient NHS number (system|value)",
                reference_identifiers("patient"),
            ),
            _p("patient", "reference", "The Patient", references("patient")),
            _p("status", "token", "active | inactive | ...", code("status")),
            _p("actor", "token", "An organisation the consent names (ODS code)", consent_actors),
            _p("date", "date", "When the consent was given"),
        ],
        # What a referral message carries beside the ServiceRequest, stored in the referrer's tenant.
        "PractitionerRole": [
            _p("identifier", "token", "Business identifier", identifiers("identifier")),
            _p("practitioner", "reference", "The Practitioner", references("practitioner")),
            _p("organization", "reference", "The Organization", references("organization")),
        ],
        "Practitioner": [
            _p("identifier", "token", "Business identifier (GMC, GMP, ...)", identifiers("identifier")),
        ],
        "Organization": [
            _p("identifier", "token", "ODS code or other business identifier", identifiers("identifier")),
        ],
        "HealthcareService": [
            _p("identifier", "token", "Business identifier", identifiers("identifier")),
        ],
        "Location": [
            _p("identifier", "token", "Business identifier", identifiers("identifier")),
        ],
        **{
            rtype: _subject_params("subject")
            for rtype in ("QuestionnaireResponse", "Condition", "Encounter", "CarePlan", "Flag")
        },
    }.items()
}


def index_tokens(resource_type: str, resource: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Returns the (param, system, value) rows to index for this resource."""
    rows: list[tuple[str, str, str]] = []
    for param in SEARCH_PARAMS.get(resource_type, {}).values():
        if param.extract is not None:
            rows.extend((param.name, system, value[:200]) for system, value in param.extract(resource))
    return rows
