"""Issue 12, messaging: `$process-message` answers a BaRS response message, and the resources a referral
reaches in its message (who referred, what supports it) are stored in the referring tenant, readable
and searchable there, with the stored ServiceRequest and Patient pointing at them."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from tests.profiles.fhir_files import load
from tests.profiles.gp_message import referral_bundle

FHIR_JSON = "application/fhir+json"
MESSAGE = "/fhir/$process-message"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
GP_A = "A81001"


def post(client, body: dict[str, Any], headers: dict[str, str], url: str = MESSAGE):
    return client.post(url, json=body, headers={**headers, "Content-Type": FHIR_JSON})


def first(bundle: dict[str, Any], rtype: str) -> dict[str, Any]:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype)


def with_supporting_info(bundle: dict[str, Any]) -> dict[str, Any]:
    """The test message with a PractitionerRole as requester (its Practitioner and Organization in the
    message), a QuestionnaireResponse as supportingInfo, and the Patient's GP and NHS-number verification."""
    out = copy.deepcopy(bundle)
    role, qr, gp = (f"urn:uuid:{uuid.uuid4()}" for _ in range(3))
    prac = next(e["fullUrl"] for e in out["entry"] if e["resource"]["resourceType"] == "Practitioner")
    patient_entry = next(e for e in out["entry"] if e["resource"]["resourceType"] == "Patient")
    sr = first(out, "ServiceRequest")
    sr["requester"] = {"reference": role}
    sr["supportingInfo"] = [{"reference": qr}]
    patient = patient_entry["resource"]
    patient["generalPractitioner"] = [{"reference": gp}]
    patient["identifier"][0]["extension"] = [
        {
            "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus",
            "valueCodeableConcept": {
                "coding": [
                    {
                        "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
                        "code": "01",
                        "display": "Number present and verified",
                    }
                ]
            },
        }
    ]
    out["entry"] += [
        {
            "fullUrl": role,
            "resource": {
                "resourceType": "PractitionerRole",
                "practitioner": {"reference": prac},
                "organization": {"reference": gp},
                "code": [{"text": "GP"}],
            },
        },
        {
            "fullUrl": gp,
            "resource": {
                "resourceType": "Organization",
                "identifier": [{"system": ODS, "value": GP_A}],
                "name": "Practice A",
            },
        },
        {
            "fullUrl": qr,
            "resource": {
                "resourceType": "QuestionnaireResponse",
                "status": "completed",
                "subject": {"reference": patient_entry["fullUrl"]},
                "item": [{"linkId": "what-matters", "answer": [{"valueString": "Meeting people"}]}],
            },
        },
    ]
    return out


def test_process_message_answers_a_bars_response_message_naming_the_request(client, token_for) -> None:
    bundle = referral_bundle("9990001006", GP_A, vcse_id="8VC01", ref_id="RESP-1", consent_to=["8VC01"])
    request_header_id = bundle["entry"][0]["fullUrl"].removeprefix("urn:uuid:")

    response = post(client, bundle, token_for("demo-gp"))

    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["resourceType"], answer["type"]) == ("Bundle", "message")
    header = answer["entry"][0]["resource"]
    assert header["resourceType"] == "MessageHeader"
    assert header["eventCoding"] == {
        "system": "https://fhir.nhs.uk/CodeSystem/message-events-bars",
        "code": "servicerequest-response",
    }
    assert header["response"] == {"identifier": request_header_id, "code": "ok"}
    assert header["destination"][0]["endpoint"] == f"{ODS}|{GP_A}"  # back to the request's source
    by_url = {e["fullUrl"]: e["resource"] for e in answer["entry"][1:]}
    focused = [by_url[f["reference"]]["resourceType"] for f in header["focus"]]
    assert focused == ["ServiceRequest", "Task"]
    sr = first(answer, "ServiceRequest")
    assert client.get(f"/fhir/ServiceRequest/{sr['id']}", headers=token_for("demo-gp")).status_code == 200


def test_the_response_has_the_shape_of_the_bars_response_example(client, token_for) -> None:
    """Same elements, with the same types, as BaRS' own servicerequest-response example (fixtures/fhir)."""
    example = load("bars-api_servicerequest-response_validation_message-bundle.json")
    example_header = example["entry"][0]["resource"]
    bundle = referral_bundle("9990001006", GP_A, vcse_id="8VC01", ref_id="RESP-EX", consent_to=["8VC01"])
    bundle["entry"][0]["resource"]["id"] = "request-header-1"

    header = post(client, bundle, token_for("demo-gp")).json()["entry"][0]["resource"]

    assert header["eventCoding"] == example_header["eventCoding"]
    assert set(header["response"]) == set(example_header["response"]) == {"identifier", "code"}
    assert header["response"]["identifier"] == "request-header-1"  # the request's MessageHeader.id wins
    assert header["meta"]["profile"] == example_header["meta"]["profile"]
    for element in ("destination", "source", "reason", "focus"):
        assert type(header[element]) is type(example_header[element]), element


def test_a_cancellation_answers_a_response_message_on_the_revoked_referral(client, token_for) -> None:
    bundle = referral_bundle("9990001006", GP_A, vcse_id="8VC01", ref_id="RESP-C", consent_to=["8VC01"])
    assert post(client, bundle, token_for("demo-gp")).status_code == 200
    cancel = copy.deepcopy(bundle)
    cancel["entry"][0]["fullUrl"] = f"urn:uuid:{uuid.uuid4()}"
    cancel["entry"][0]["resource"]["reason"]["coding"][0]["code"] = "update"
    first(cancel, "ServiceRequest")["status"] = "revoked"

    answer = post(client, cancel, token_for("demo-gp")).json()

    header = answer["entry"][0]["resource"]
    assert header["response"] == {"identifier": cancel["entry"][0]["fullUrl"][9:], "code": "ok"}
    assert first(answer, "ServiceRequest")["status"] == "revoked"


def test_an_error_is_still_an_operation_outcome(client, token_for) -> None:
    bundle = referral_bundle("9990001006", GP_A, ref_id="RESP-E")
    first(bundle, "ServiceRequest")["status"] = "draft"

    response = post(client, bundle, token_for("demo-gp"))

    assert response.status_code == 422
    assert response.json()["resourceType"] == "OperationOutcome"


def test_who_referred_and_what_supports_it_are_stored_and_resolvable(client, token_for) -> None:
    bundle = with_supporting_info(referral_bundle("9990001006", GP_A, ref_id="REFS-1"))
    gp = token_for("demo-gp")

    answer = post(client, bundle, gp).json()

    sr = first(answer, "ServiceRequest")
    role_ref = sr["requester"]["reference"]
    assert role_ref.startswith("PractitionerRole/")
    role = client.get(f"/fhir/{role_ref}", headers=gp).json()
    assert role["resourceType"] == "PractitionerRole"
    practitioner = client.get(f"/fhir/{role['practitioner']['reference']}", headers=gp).json()
    assert practitioner["name"] == [{"family": "Jones", "given": ["Sam"]}]
    organization = client.get(f"/fhir/{role['organization']['reference']}", headers=gp).json()
    assert organization["identifier"] == [{"system": ODS, "value": GP_A}]
    (support,) = sr["supportingInfo"]
    qr = client.get(f"/fhir/{support['reference']}", headers=gp).json()
    assert qr["resourceType"] == "QuestionnaireResponse"
    assert qr["subject"]["reference"] == sr["subject"]["reference"]  # the stored Patient
    # the Patient keeps its GP (the same stored Organization) and its NHS number verification status
    patient = client.get(f"/fhir/{sr['subject']['reference']}", headers=gp).json()
    assert [gp["reference"] for gp in patient["generalPractitioner"]] == [role["organization"]["reference"]]
    assert patient["generalPractitioner"][0]["identifier"] == {"system": ODS, "value": GP_A}
    assert patient["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "01"
    # searchable in the referring tenant
    found = client.get(
        "/fhir/QuestionnaireResponse", params={"patient:identifier": f"{NHS}|9990001006"}, headers=gp
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [qr["id"]]
    found = client.get("/fhir/Organization", params={"identifier": f"{ODS}|{GP_A}"}, headers=gp).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [organization["id"]]


def test_the_stored_references_are_invisible_to_another_tenant_and_to_the_host(client, token_for) -> None:
    bundle = with_supporting_info(referral_bundle("9990001006", GP_A, vcse_id="8VC01", consent_to=["8VC01"]))
    sr = first(post(client, bundle, token_for("demo-gp")).json(), "ServiceRequest")
    role_ref = sr["requester"]["reference"]

    assert client.get(f"/fhir/{role_ref}", headers=token_for("demo-gp-b")).status_code == 404
    assert client.get("/fhir/QuestionnaireResponse", headers=token_for("demo-gp-b")).json().get("total", 0) == 0
    assert not client.get("/fhir/QuestionnaireResponse", headers=token_for("demo-gp-b")).json().get("entry")
    assert client.get(f"/fhir/{role_ref}", headers=token_for("demo-vcse")).status_code == 403  # no scope


def test_a_referrer_token_reading_organizations_still_cannot_use_the_admin_directory(client, token_for) -> None:
    response = client.get("/admin/v1/organisations", headers=token_for("demo-gp"))

    assert response.status_code == 403
