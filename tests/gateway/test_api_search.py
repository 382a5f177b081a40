"""Search over HTTP (identifier, patient:identifier, status, performer:identifier, authored with
prefixes, paging with working `next` links, searchset shape), and the CapabilityStatement listing
exactly the interactions and search parameters the app's routes serve.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.profiles.fhir_files import load
from tests.profiles.gp_message import referral_bundle

FHIR_JSON = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
REF_SYSTEM = "https://gp.example.nhs.uk/referrals"
ADA, BRAM = "9990001006", "9990001014"


def send(client, token_for, ref_id: str, nhs: str, *, vcse: str | None = None, authored: str | None = None) -> str:
    """Sends a referral message from demo-gp; returns the stored ServiceRequest id."""
    bundle = referral_bundle(nhs, "A81001", vcse_id=vcse, ref_id=ref_id)
    if authored:
        bundle["entry"][1]["resource"]["authoredOn"] = authored
    response = client.post(
        "/fhir/$process-message", json=bundle, headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON}
    )
    assert response.status_code == 200, response.text
    return next(
        e["resource"]["id"] for e in response.json()["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
    )


def search(client, token_for, params: dict[str, str] | list[tuple[str, str]], rtype: str = "ServiceRequest"):
    response = client.get(f"/fhir/{rtype}", params=params, headers=token_for("demo-gp"))
    assert response.status_code == 200, response.text
    return response.json()


def found(client, token_for, params, rtype: str = "ServiceRequest") -> set[str]:
    return {e["resource"]["id"] for e in search(client, token_for, params, rtype).get("entry", [])}


@pytest.fixture
def three(client, token_for) -> dict[str, str]:
    """Three referrals from demo-gp: R1 (Ada, 8VC01, January), R2 (Ada, 8VC02, June), R3 (Bram, 8VC01, November)."""
    return {
        "R1": send(client, token_for, "R1", ADA, vcse="8VC01", authored="2026-01-15T09:00:00+00:00"),
        "R2": send(client, token_for, "R2", ADA, vcse="8VC02", authored="2026-06-15T12:00:00+00:00"),
        "R3": send(client, token_for, "R3", BRAM, vcse="8VC01", authored="2026-11-20T10:00:00+00:00"),
    }


def test_identifier_search_with_and_without_system(client, token_for, three) -> None:
    assert found(client, token_for, {"identifier": f"{REF_SYSTEM}|R2"}) == {three["R2"]}
    assert found(client, token_for, {"identifier": "R2"}) == {three["R2"]}
    assert found(client, token_for, {"identifier": "https://other.example/referrals|R2"}) == set()
    assert found(client, token_for, {"identifier": "R1,R3"}) == {three["R1"], three["R3"]}


def test_patient_identifier_search_by_system_and_value_and_by_value_only(client, token_for, three) -> None:
    assert found(client, token_for, {"patient:identifier": f"{NHS}|{ADA}"}) == {three["R1"], three["R2"]}
    assert found(client, token_for, {"patient:identifier": BRAM}) == {three["R3"]}
    assert found(client, token_for, {"patient:identifier": f"{ODS}|{ADA}"}) == set()


def test_patient_reference_search_finds_the_referrals_of_the_stored_patient(client, token_for, three) -> None:
    patient = search(client, token_for, {"identifier": f"{NHS}|{ADA}"}, "Patient")["entry"][0]["resource"]

    assert found(client, token_for, {"patient": f"Patient/{patient['id']}"}) == {three["R1"], three["R2"]}


def test_status_search_follows_a_cancellation(client, token_for, three) -> None:
    sr = client.get(f"/fhir/ServiceRequest/{three['R1']}", headers=token_for("demo-gp")).json()
    cancelled = client.put(
        f"/fhir/ServiceRequest/{sr['id']}",
        json={**sr, "status": "revoked"},
        headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON},
    )
    assert cancelled.status_code == 200, cancelled.text

    assert found(client, token_for, {"status": "revoked"}) == {three["R1"]}
    assert found(client, token_for, {"status": "active"}) == {three["R2"], three["R3"]}
    assert found(client, token_for, {"status": "active,revoked"}) == set(three.values())


def test_performer_identifier_search(client, token_for, three) -> None:
    assert found(client, token_for, {"performer:identifier": f"{ODS}|8VC01"}) == {three["R1"], three["R3"]}
    assert found(client, token_for, {"performer:identifier": "8VC02"}) == {three["R2"]}


def test_parameters_combine_with_and(client, token_for, three) -> None:
    params = [("patient:identifier", ADA), ("performer:identifier", "8VC01")]

    assert found(client, token_for, params) == {three["R1"]}


AUTHORED_CASES = [
    (["ge2026-06-15"], {"R2", "R3"}),
    (["le2026-06-15"], {"R1", "R2"}),
    (["gt2026-06-15"], {"R3"}),
    (["lt2026-06-15"], {"R1"}),
    (["2026-06"], {"R2"}),
    (["eq2026"], {"R1", "R2", "R3"}),
    (["ge2026-02-01", "le2026-10-31"], {"R2"}),
    (["2026-06-15T12:00:00Z"], {"R2"}),
    (["le2026-06-15T12:59:59+01:00"], {"R1"}),  # 11:59:59Z: before R2
    (["ge2026-06-15T13:00:00+01:00"], {"R2", "R3"}),  # 12:00:00Z: R2 itself
    (["ge2027"], set()),
]


def test_authored_date_search_with_prefixes(client, token_for, three) -> None:
    by_id = {sr_id: name for name, sr_id in three.items()}
    for values, expected in AUTHORED_CASES:
        params = [("authored", v) for v in values]

        assert {by_id[i] for i in found(client, token_for, params)} == expected, values


def test_bad_date_prefix_is_400(client, token_for) -> None:
    response = client.get("/fhir/ServiceRequest", params={"authored": "sa2026-01-01"}, headers=token_for("demo-gp"))

    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["authored"]


def test_count_pages_through_every_match_once_by_following_next_links(client, token_for) -> None:
    sent = {send(client, token_for, f"PAGE-{i}", ADA) for i in range(7)}
    headers = token_for("demo-gp")

    page = client.get("/fhir/ServiceRequest", params={"patient:identifier": ADA, "_count": "3"}, headers=headers).json()
    seen: list[str] = []
    sizes: list[int] = []
    while True:
        sizes.append(len(page["entry"]))
        seen += [e["resource"]["id"] for e in page["entry"]]
        links = {link["relation"]: link["url"] for link in page["link"]}
        if "next" not in links:
            break
        assert links["next"].startswith("http://testserver/fhir/ServiceRequest?")
        response = client.get(links["next"], headers=headers)
        assert response.status_code == 200
        page = response.json()

    assert sizes == [3, 3, 1]
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == sent
    assert "previous" in links


def test_next_links_keep_the_search_parameters(client, token_for) -> None:
    for i in range(3):
        send(client, token_for, f"KEEP-{i}", ADA)
    send(client, token_for, "OTHER", BRAM)

    page = search(client, token_for, {"patient:identifier": f"{NHS}|{ADA}", "_count": "2"})
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    rest = client.get(next_url, headers=token_for("demo-gp")).json()

    assert len(rest["entry"]) == 1
    assert all(e["resource"]["subject"]["identifier"]["value"] == ADA for e in rest["entry"])
    assert "next" not in {link["relation"] for link in rest["link"]}


def test_searchset_bundle_shape(client, token_for, three) -> None:
    bundle = search(client, token_for, {"identifier": "R3"})

    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
    (self_link,) = [link for link in bundle["link"] if link["relation"] == "self"]
    assert self_link["url"].startswith("http://testserver/fhir/ServiceRequest?")
    assert "identifier=R3" in self_link["url"]
    (entry,) = bundle["entry"]
    assert entry["fullUrl"] == f"http://testserver/fhir/ServiceRequest/{three['R3']}"
    assert entry["search"] == {"mode": "match"}
    assert entry["resource"]["resourceType"] == "ServiceRequest"
    assert entry["resource"]["meta"]["versionId"] == "1"


def test_empty_search_is_an_empty_searchset(client, token_for) -> None:
    bundle = search(client, token_for, {"identifier": "NOTHING"})

    # FHIR JSON allows no empty arrays (issue 12 item 6): an empty searchset has no `entry` at all
    assert bundle["type"] == "searchset" and "entry" not in bundle
    assert [link["relation"] for link in bundle["link"]] == ["self"]


def test_bad_count_is_400(client, token_for) -> None:
    for count in ("-1", "ten"):  # _count=0 is a count-only search (issue 12 item 9)
        response = client.get("/fhir/ServiceRequest", params={"_count": count}, headers=token_for("demo-gp"))

        assert response.status_code == 400, count
        assert response.json()["issue"][0]["expression"] == ["_count"]


def test_count_over_the_maximum_is_capped(client, token_for, settings) -> None:
    bundle = search(client, token_for, {"_count": str(settings.page_size_max * 10)})

    self_url = bundle["link"][0]["url"]
    assert f"_count={settings.page_size_max}" in self_url


def test_format_other_than_json_is_406(client, token_for) -> None:
    response = client.get("/fhir/ServiceRequest", params={"_format": "xml"}, headers=token_for("demo-gp"))

    assert response.status_code == 406
    assert response.json()["resourceType"] == "OperationOutcome"


def test_task_and_patient_are_searchable_by_nhs_number(client, token_for) -> None:
    sr_id = send(client, token_for, "TASKED", BRAM, vcse="8VC01")

    tasks = search(client, token_for, {"patient:identifier": f"{NHS}|{BRAM}"}, "Task")["entry"]
    patients = search(client, token_for, {"identifier": f"{NHS}|{BRAM}"}, "Patient")["entry"]

    assert [t["resource"]["focus"]["reference"] for t in tasks] == [f"ServiceRequest/{sr_id}"]
    assert len(patients) == 1


# -- the CapabilityStatement says exactly what the routes serve -------------------------------------

_ID = r"\{[a-z_]+\}"
_SHAPES = [
    ("get", re.compile(rf"^/fhir/([A-Z]\w+)/{_ID}$"), "read"),
    ("get", re.compile(rf"^/fhir/([A-Z]\w+)/{_ID}/_history/{_ID}$"), "vread"),
    ("get", re.compile(r"^/fhir/([A-Z]\w+)$"), "search-type"),
    ("post", re.compile(r"^/fhir/([A-Z]\w+)$"), "create"),
    ("put", re.compile(rf"^/fhir/([A-Z]\w+)/{_ID}$"), "update"),
    ("patch", re.compile(rf"^/fhir/([A-Z]\w+)/{_ID}$"), "patch"),
    ("delete", re.compile(rf"^/fhir/([A-Z]\w+)/{_ID}$"), "delete"),
    ("get", re.compile(rf"^/fhir/([A-Z]\w+)/{_ID}/_history$"), "history-instance"),
    ("post", re.compile(r"^/fhir/([A-Z]\w+)/_search$"), "search-type"),
]


def served(openapi: dict[str, Any]) -> tuple[set[tuple[str, str]], set[str], set[tuple[str, str]]]:
    """Returns what the app serves, read from the HTTP methods and paths of its OpenAPI document (not from
    route names, which the statement is built from): (type, interaction) pairs, system operations, and
    (type, operation) pairs for operations on a type or instance."""
    interactions: set[tuple[str, str]] = set()
    operations: set[str] = set()
    type_operations: set[tuple[str, str]] = set()
    for path, methods in openapi["paths"].items():
        if not path.startswith("/fhir/"):
            continue
        if "/$" in path:
            on_type, operation = path.split("/")[2], path.rsplit("/$", 1)[1]
            if on_type.startswith("$"):
                operations.add(operation)
            else:
                type_operations.add((on_type, operation))
            continue
        for method in methods:
            for shape_method, pattern, interaction in _SHAPES:
                match = pattern.match(path)
                if match and method == shape_method:
                    interactions.add((match.group(1), interaction))
    return interactions, operations, type_operations


def listed(statement: dict[str, Any]) -> tuple[set[tuple[str, str]], set[str], set[tuple[str, str]]]:
    rest = statement["rest"][0]
    interactions = {(r["type"], i["code"]) for r in rest["resource"] for i in r["interaction"]}
    type_operations = {(r["type"], op["name"]) for r in rest["resource"] for op in r.get("operation", [])}
    return interactions, {op["name"] for op in rest.get("operation", [])}, type_operations


def test_capability_statement_lists_exactly_the_interactions_the_app_serves(client) -> None:
    statement = client.get("/fhir/metadata").json()
    serving = served(client.get("/openapi.json").json())

    assert listed(statement) == serving
    assert ("ServiceRequest", "create") in serving[0]
    assert "process-message" in serving[1]
    for resource in statement["rest"][0]["resource"]:
        assert resource["readHistory"] == ((resource["type"], "vread") in serving[0])


def test_capability_statement_leaves_out_a_route_that_is_not_served(app) -> None:
    from gateway.api.metadata import capability_statement
    from gateway.storage.searchparams import SEARCH_PARAMS

    routes = [
        r
        for r in app.state.fhir_routes
        if getattr(r, "name", "") not in ("ServiceRequest.vread", "Task.search-type", "Task.search-type-post")
    ]

    statement = capability_statement(routes, "http://testserver", SEARCH_PARAMS)

    interactions = listed(statement)[0]
    assert ("ServiceRequest", "vread") not in interactions
    assert ("ServiceRequest", "read") in interactions
    assert ("Task", "search-type") not in interactions
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert by_type["ServiceRequest"]["readHistory"] is False
    assert "searchParam" not in by_type["Task"]  # no search route, so no search parameters either


SAMPLE_VALUES = {
    "date": "ge2026-01-01",
    "reference": "Patient/x",
    "action": "C",
    "outcome": "0",
    "patient:identifier": "https://fhir.nhs.uk/Id/nhs-number|9990001006",
}
SEARCHER = {"AuditEvent": "demo-ig"}  # whose token may search the type; a referrer may search the others


def test_every_search_route_lists_its_parameters_and_accepts_exactly_those(client, token_for) -> None:
    statement = client.get("/fhir/metadata").json()

    searchable = [r for r in statement["rest"][0]["resource"] if (r["type"], "search-type") in listed(statement)[0]]
    assert {r["type"] for r in searchable} >= {"ServiceRequest", "Patient", "Task", "Observation", "Consent"}
    for resource in searchable:
        rtype = resource["type"]
        headers = token_for(SEARCHER.get(rtype, "demo-gp"))
        assert resource.get("searchParam"), f"{rtype} is searchable but lists no search parameters"
        for param in resource["searchParam"]:
            # a name is listed without modifiers (issue 12 item 12); one served only with a modifier says so
            modifiers = re.findall(r"Modifier :([\w-]+) supported", param["documentation"])
            name = (
                f"{param['name']}:{modifiers[0]}"
                if "Only with the modifier" in param["documentation"]
                else param["name"]
            )
            assert ":" not in param["name"], param["name"]
            value = SAMPLE_VALUES.get(name) or SAMPLE_VALUES.get(param["type"], "x")
            response = client.get(f"/fhir/{rtype}", params={name: value}, headers=headers)
            assert response.status_code == 200, (rtype, param["name"], response.text)
        unlisted = client.get(f"/fhir/{rtype}", params={"unlisted-param": "x"}, headers=headers)
        assert unlisted.status_code == 400, rtype


def test_capability_statement_is_valid_r4(client) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    response = client.get("/fhir/metadata")

    statement = CapabilityStatement.model_validate_json(response.content)
    assert statement.fhirVersion == "4.0.1"
    assert response.headers["content-type"].startswith(FHIR_JSON)


def test_service_request_json_round_trips_through_search(client, token_for) -> None:
    created = client.post(
        "/fhir/ServiceRequest",
        json=load("sp-servicerequest.json"),
        headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON},
    ).json()

    (entry,) = search(client, token_for, {"identifier": "SPR-2026-000123"})["entry"]

    assert entry["resource"] == created
