"""The API a CRM vendor reads: the OpenAPI document (security scheme, request and response schemas, no
schema the API never returns), /docs served offline from the gateway's own assets, and the published JSON
Schemas, each valid and linked."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from jsonschema import Draft202012Validator

from gateway.api.published_schemas import SCHEMA_NAMES

JSON_ROUTES = [
    ("post", "/vcse/v1/referrals/{referral_id}/outcomes"),
    ("post", "/vcse/v1/referrals/{referral_id}/status"),
    ("post", "/fhir/$process-message"),
    ("put", "/admin/v1/organisations/{org_id}"),
    ("post", "/admin/v1/clients"),
    ("post", "/admin/v1/outbox/retry"),
]


@pytest.fixture
def doc(client) -> dict:  # type: ignore[no-untyped-def]
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def _resolve(doc: dict, schema: dict) -> dict:
    ref = schema.get("$ref")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema


def test_the_security_scheme_is_client_credentials_with_private_key_jwt(doc: dict) -> None:
    oauth = doc["components"]["securitySchemes"]["oauth2"]
    flow = oauth["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/oauth2/token"
    assert "private_key_jwt" in oauth["description"]
    assert oauth["x-token-endpoint-auth-methods-supported"] == ["private_key_jwt"]
    status = doc["paths"]["/vcse/v1/referrals/{referral_id}/status"]["post"]
    assert status["security"] == [{"oauth2": ["system/Task.u"]}, {"bearer": []}]
    assert doc["paths"]["/fhir/metadata"]["get"]["security"] == []
    assert set(flow["scopes"]) >= {"system/Task.u", "system/Observation.c", "system/ServiceRequest.c"}


@pytest.mark.parametrize(("method", "path"), JSON_ROUTES)
def test_every_json_route_has_a_request_body_schema(doc: dict, method: str, path: str) -> None:
    body = doc["paths"][path][method]["requestBody"]
    [(media, content)] = body["content"].items()
    assert media in ("application/json", "application/fhir+json")
    schema = _resolve(doc, content["schema"])
    assert schema.get("properties"), f"{method} {path}: the body schema lists no fields"


def test_the_outcome_body_is_the_published_submission_schema(doc: dict) -> None:
    body = doc["paths"]["/vcse/v1/referrals/{referral_id}/outcomes"]["post"]["requestBody"]
    schema = _resolve(doc, body["content"]["application/json"]["schema"])
    assert {"submission_id", "recorded_at", "stage", "ons4", "swemwbs"} <= set(schema["properties"])
    assert schema["externalDocs"]["url"] == "/vcse/v1/schema/outcome-submission"


def test_success_and_error_answers_have_schemas(doc: dict) -> None:
    listed = doc["paths"]["/vcse/v1/referrals"]["get"]["responses"]
    assert listed["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ReferralList"}
    assert {"cursor", "more", "referrals"} <= set(doc["components"]["schemas"]["ReferralList"]["properties"])
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")) and not path.startswith(("/oauth2", "/.well-known")):
                    content = response["content"]
                    assert content == {
                        "application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}
                    }, f"{method} {path} {code}"


def test_no_schema_the_api_never_returns(doc: dict) -> None:
    text = json.dumps(doc)
    assert "HTTPValidationError" not in text and '"ValidationError"' not in text


def test_the_published_schemas_are_linked_from_the_document(doc: dict) -> None:
    for name in SCHEMA_NAMES:
        assert f"/vcse/v1/schema/{name}" in doc["info"]["description"]
    assert doc["components"]["schemas"]["ReferralView"]["externalDocs"]["url"] == "/vcse/v1/schema/referral-packet"


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for attr in ("src", "href"):
            if tag in ("script", "link", "img") and found.get(attr):
                self.refs.append(str(found[attr]))


def test_docs_load_only_the_gateways_own_assets(client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    parser = _Refs()
    parser.feed(page.text)
    assert parser.refs, "the page loads nothing"
    for ref in parser.refs:
        assert ref.startswith("/"), f"/docs loads {ref} from elsewhere"
        assert client.get(ref).status_code == 200, ref
    assert not re.search(r"https?://(?!testserver)", page.text.split("<script>")[-1])
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN: not offered


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_published_schema_is_a_valid_draft_2020_12_schema(client, name: str) -> None:
    answer = client.get(f"/vcse/v1/schema/{name}")
    assert answer.status_code == 200
    schema = answer.json()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/vcse/v1/schema/{name}/1.0")


def test_the_schemas_accept_what_the_gateway_sends_and_takes(client, token_for) -> None:
    from tests.profiles.gp_message import referral_bundle

    message = referral_bundle("9990002134", "A81001", "8VC01", "DOCS-1", ["8VC01"])
    client.post(
        "/fhir/$process-message",
        json=message,
        headers=token_for("demo-gp", **{"Content-Type": "application/fhir+json"}),
    )
    packet = client.get("/vcse/v1/referrals", headers=token_for("demo-vcse")).json()["referrals"][0]
    webhook = Draft202012Validator(client.get("/vcse/v1/schema/webhook-envelope").json())
    assert list(webhook.iter_errors({k: v for k, v in packet.items() if k != "status"})) == []
    status = Draft202012Validator(client.get("/vcse/v1/schema/status-update").json())
    assert status.is_valid({"status": "declined", "reason": "No capacity"})
    assert not status.is_valid({"status": "done"})
    submission = Draft202012Validator(client.get("/vcse/v1/schema/outcome-submission").json())
    good = {
        "submission_id": "s-1",
        "recorded_at": "2026-11-30T10:00:00Z",
        "stage": "baseline",
        "ons4": {"life_satisfaction": 6, "worthwhile": 7, "happiness": 5, "anxiety": 3},
    }
    assert list(submission.iter_errors(good)) == []
    assert not submission.is_valid({**good, "stage": "middle"})
    assert client.get("/vcse/v1/schema/nonsense").status_code in (400, 422)
    index = client.get("/vcse/v1/schema").json()["schemas"]
    assert set(index) == set(SCHEMA_NAMES)
