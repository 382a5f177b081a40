"""Issue 12: every kind of resource the gateway emits over its FHIR routes validates against the official
FHIR R4 JSON schema (tests/fhir_schema/fhir.schema.json, HL7, CC0; see SOURCE.md there), and carries no
empty array or object. The resources come from a real exchange through HTTP: a referral message with
a requester and supporting information, a VCSE host's acceptance and outcomes, a cancellation, searches
with includes, history, a conditional create, refusals, the CapabilityStatement, an OperationDefinition
and the audit trail."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from fhirpathpy import evaluate

from tests.gateway.test_api_messaging_conformance import with_supporting_info
from tests.gateway.test_api_rest_conformance import empty_array_path
from tests.profiles.gp_message import referral_bundle

SCHEMA = Path(__file__).resolve().parents[1] / "fhir_schema" / "fhir.schema.json"
FHIR_JSON = "application/fhir+json"
OUTCOMES: dict[str, Any] = {
    "submission_id": "schema-001",
    "recorded_at": "2026-12-01T10:00:00Z",
    "stage": "baseline",
    "ons4": {"life_satisfaction": 4, "worthwhile": 5, "happiness": 3, "anxiety": 7},
    "swemwbs": {"items": [2, 3, 2, 3, 3, 2, 3]},
    "pam": {"level": 2, "score": 51.0},
}


@cache
def _schema() -> dict[str, Any]:
    schema = json.loads(SCHEMA.read_text())
    # The vendored schema is the one published with R4 4.0.0; R4's technical correction 4.0.1 (what the
    # gateway declares) added its own number to the FHIRVersion code list, and nothing else is loosened.
    for definition in ("CapabilityStatement", "StructureDefinition"):
        schema["definitions"][definition]["properties"]["fhirVersion"]["enum"].append("4.0.1")
    return schema


@cache
def validator(resource_type: str | None = None) -> jsonschema.Draft6Validator:
    """The whole schema (any resource), or its definition of one type (errors then name the element)."""
    schema = _schema()
    if resource_type is None:
        return jsonschema.Draft6Validator(schema)
    return jsonschema.Draft6Validator({"$ref": f"#/definitions/{resource_type}", "definitions": schema["definitions"]})


def resources_in(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The document and, for a Bundle, every resource in it."""
    inner = [e["resource"] for e in document.get("entry", []) if "resource" in e]
    return [document, *(r for resource in inner for r in resources_in(resource))]


def exchange(client, token_for) -> list[dict[str, Any]]:
    """Returns every FHIR document the gateway answered during one realistic exchange."""
    gp = token_for("demo-gp")
    out: list[dict[str, Any]] = []

    def keep(response) -> dict[str, Any]:
        assert response.headers["content-type"].startswith(FHIR_JSON), response.url
        out.append(response.json())
        return response.json()

    bundle = with_supporting_info(referral_bundle("9990001006", "A81001", vcse_id="8VC01", consent_to=["8VC01"]))
    answer = keep(client.post("/fhir/$process-message", json=bundle, headers={**gp, "Content-Type": FHIR_JSON}))
    sr = next(e["resource"] for e in answer["entry"] if e["resource"]["resourceType"] == "ServiceRequest")
    task = next(e["resource"] for e in answer["entry"] if e["resource"]["resourceType"] == "Task")
    vcse = token_for("demo-vcse")
    referral_id = task["identifier"][0]["value"]
    assert client.post(f"/vcse/v1/referrals/{referral_id}/status", json={"status": "accepted"}, headers=vcse).is_success
    assert client.post(f"/vcse/v1/referrals/{referral_id}/outcomes", json=OUTCOMES, headers=vcse).is_success
    for url, params in [
        ("/fhir/metadata", None),
        ("/fhir/OperationDefinition/ServiceRequest-everything", None),
        (f"/fhir/ServiceRequest/{sr['id']}", None),
        (f"/fhir/{sr['requester']['reference']}", None),
        (f"/fhir/{sr['supportingInfo'][0]['reference']}", None),
        (f"/fhir/ServiceRequest/{sr['id']}/$everything", None),
        (f"/fhir/ServiceRequest/{sr['id']}/_history", None),
        ("/fhir/ServiceRequest", [("_include", "ServiceRequest:patient"), ("_revinclude", "Task:focus")]),
        ("/fhir/ServiceRequest", {"_summary": "true"}),
        ("/fhir/ServiceRequest", {"_elements": "status,code"}),
        ("/fhir/ServiceRequest", {"_summary": "count"}),
        ("/fhir/Observation", {"_include": "Observation:based-on"}),
        ("/fhir/Practitioner", None),
        ("/fhir/Organization", None),
        ("/fhir/PractitionerRole", [("_include", "PractitionerRole:practitioner")]),
        ("/fhir/Consent", None),
        ("/fhir/ServiceRequest", {"colour": "blue"}),  # a refusal: OperationOutcome
    ]:
        keep(client.get(url, params=params, headers=gp))
    keep(client.get("/fhir/ServiceRequest", params={"colour": "blue"}, headers={**gp, "Prefer": "handling=lenient"}))
    keep(client.get("/fhir/AuditEvent", headers=token_for("demo-ig")))
    cancel = copy.deepcopy(bundle)
    cancel["entry"][0]["fullUrl"] = "urn:uuid:5b4bd1f4-52a8-4e38-9f6b-2d0b4b0e5e01"
    cancel["entry"][0]["resource"]["reason"]["coding"][0]["code"] = "update"
    cancel["entry"][1]["resource"]["status"] = "revoked"
    keep(
        client.post("/fhir/$process-message", json=cancel, headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON})
    )
    keep(client.get(f"/fhir/Task/{task['id']}", headers=gp))
    created = {k: v for k, v in sr.items() if k not in ("id", "meta", "requester", "supportingInfo")}
    created["identifier"] = [{"system": "https://gp.example.nhs.uk/referrals", "value": "SCHEMA-PLAIN"}]
    created["status"] = "active"
    headers = {**token_for("demo-gp"), "Content-Type": FHIR_JSON, "Prefer": "return=OperationOutcome"}
    keep(client.post("/fhir/ServiceRequest", json=created, headers=headers))
    keep(client.get("/fhir/ServiceRequest", params={"_format": "xml"}, headers=gp))  # 406 OperationOutcome
    return out


def test_every_kind_of_resource_the_gateway_emits_is_valid_r4_json(client, token_for) -> None:
    documents = exchange(client, token_for)

    kinds: set[str] = set()
    for document in documents:
        assert empty_array_path(document) is None, (document.get("resourceType"), empty_array_path(document))
        for resource in resources_in(document):
            kinds.add(resource["resourceType"])
            errors = sorted(
                validator(resource["resourceType"]).iter_errors(resource), key=lambda e: list(e.absolute_path)
            )
            assert not errors, (
                resource["resourceType"],
                [(list(e.absolute_path), e.message[:200]) for e in errors[:3]],
            )
            assert validator().is_valid(resource), resource["resourceType"]  # and as any resource
    assert kinds >= {
        "Bundle",
        "MessageHeader",
        "ServiceRequest",
        "Task",
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "QuestionnaireResponse",
        "Observation",
        "Consent",
        "OperationOutcome",
        "CapabilityStatement",
        "OperationDefinition",
        "AuditEvent",
    }, kinds


def test_the_schema_catches_what_it_should() -> None:
    """The vendored schema is the real one: it refuses a wrong type, an unknown element, a wrong code."""
    good = {"resourceType": "Task", "status": "requested", "intent": "order"}
    assert validator().is_valid(good)
    assert not validator().is_valid({**good, "status": 3})
    assert not validator().is_valid({**good, "colour": "blue"})
    assert not validator().is_valid({**good, "intent": "wish"})


def test_bundle_invariants_hold_on_the_answers(client, token_for) -> None:
    """R4 Bundle invariants, evaluated with fhirpathpy: bdl-7 (fullUrl unique per version), bdl-1 (total
    only in search or history), bdl-3 (entry.request only in batch/transaction/history)."""
    invariants = {
        "bdl-7": "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl & resource.meta.versionId)"
        ".isDistinct()",
        "bdl-1": "total.empty() or (type = 'searchset') or (type = 'history')",
        "bdl-3": "entry.request.empty() or type = 'batch' or type = 'transaction' or type = 'history'",
        "msg-first": "type != 'message' or entry.first().resource.is(MessageHeader)",
    }
    bundles = [d for d in exchange(client, token_for) if d["resourceType"] == "Bundle"]
    assert {b["type"] for b in bundles} >= {"message", "searchset", "history"}
    for bundle in bundles:
        for key, expression in invariants.items():
            assert evaluate(bundle, expression) == [True], (key, bundle["type"])


def test_the_outcome_write_back_transaction_is_valid_r4_json(client, token_for) -> None:
    """The one FHIR document the gateway sends out (to a GP system's endpoint), built from the stored
    outcome Observations of a real exchange."""
    from gateway.pipeline.outcomes import transaction_bundle

    documents = exchange(client, token_for)
    observations = [r for d in documents for r in resources_in(d) if r["resourceType"] == "Observation" and r.get("id")]
    service_request = next(r for d in documents for r in resources_in(d) if r["resourceType"] == "ServiceRequest")
    assert observations

    bundle = transaction_bundle(list({o["id"]: o for o in observations}.values()), service_request, lambda _: None)

    assert empty_array_path(bundle) is None
    for resource in resources_in(bundle):
        errors = list(validator(resource["resourceType"]).iter_errors(resource))
        assert not errors, (resource["resourceType"], [(list(e.absolute_path), e.message[:200]) for e in errors[:3]])
