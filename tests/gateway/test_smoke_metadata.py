"""The app starts on both backends and serves its CapabilityStatement without a token."""


def test_metadata_is_an_r4_capability_statement(client) -> None:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    body = response.json()
    assert body["resourceType"] == "CapabilityStatement"
    assert body["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in body["rest"][0]["resource"]}
    assert {"ServiceRequest", "Patient", "Task", "Observation", "Consent"} <= types
