"""Issue 12, the FHIR REST surface a stock client expects, through HTTP: no empty arrays, conditional
create and read, Prefer, search result parameters with tenancy, history, content negotiation, the
CapabilityStatement, the requester rule on a plain create, and a cancelled Task's business status."""

from __future__ import annotations

import copy
import json
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import pytest

from tests.profiles.fhir_files import load
from tests.profiles.gp_message import referral_bundle

FHIR_JSON = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
REF_SYSTEM = "https://gp.example.nhs.uk/referrals"
ADA, BRAM = "9990001006", "9990002002"


def send(client, token_for, ref_id: str, nhs: str = ADA, *, authored: str | None = None, who: str = "demo-gp") -> str:
    ods = "A81001" if who == "demo-gp" else "B82002"
    bundle = referral_bundle(nhs, ods, vcse_id="8VC01", ref_id=ref_id, consent_to=["8VC01"])
    if authored:
        bundle["entry"][1]["resource"]["authoredOn"] = authored
    response = client.post("/fhir/$process-message", json=bundle, headers={**token_for(who), "Content-Type": FHIR_JSON})
    assert response.status_code == 200, response.text
    return next(
        e["resource"]["id"] for e in response.json()["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
    )


def get(client, token_for, url: str, params: Any = None, who: str = "demo-gp", **headers: str):
    return client.get(url, params=params, headers={**token_for(who), **headers})


def plain_request(ref_id: str, requester: str = "A81001") -> dict[str, Any]:
    body = load("sp-servicerequest.json")
    body["identifier"] = [{"system": REF_SYSTEM, "value": ref_id}]
    body["requester"] = {"identifier": {"system": ODS, "value": requester}}
    return body


def create(client, token_for, body: dict[str, Any], **headers: str):
    return client.post(
        "/fhir/ServiceRequest", json=body, headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON, **headers}
    )


def empty_array_path(node: Any, path: str = "$") -> str | None:
    if isinstance(node, list):
        if not node:
            return path
        return next((p for i, v in enumerate(node) if (p := empty_array_path(v, f"{path}[{i}]"))), None)
    if isinstance(node, dict):
        if not node and path != "$":
            return path
        return next((p for k, v in node.items() if (p := empty_array_path(v, f"{path}.{k}"))), None)
    return None


# -- item 6: no empty arrays ----------------------------------------------------------------------


def test_no_output_carries_an_empty_array_or_object(client, token_for) -> None:
    sr = send(client, token_for, "EMPTY-1")
    answers = [
        get(client, token_for, "/fhir/ServiceRequest", {"identifier": "NOTHING"}),
        get(client, token_for, "/fhir/Task", {"focus": "ServiceRequest/none"}),
        get(client, token_for, "/fhir/ServiceRequest", {"_summary": "count"}),
        get(client, token_for, f"/fhir/ServiceRequest/{sr}/_history"),
        get(client, token_for, f"/fhir/ServiceRequest/{sr}/$everything"),
        get(client, token_for, "/fhir/ServiceRequest", {"_include": "ServiceRequest:patient"}),
        client.get("/fhir/metadata"),
        client.get("/fhir/OperationDefinition/ServiceRequest-everything"),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        assert empty_array_path(response.json()) is None, (response.url, empty_array_path(response.json()))


# -- item 7: conditional create, conditional read, Last-Modified, If-Match ------------------------


def test_if_none_exist_answers_the_match_creates_when_none_and_refuses_several(client, token_for) -> None:
    first = create(client, token_for, plain_request("COND-1"), **{"If-None-Exist": f"identifier={REF_SYSTEM}|COND-1"})
    assert first.status_code == 201, first.text

    again = create(client, token_for, plain_request("COND-1"), **{"If-None-Exist": f"identifier={REF_SYSTEM}|COND-1"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    found = get(client, token_for, "/fhir/ServiceRequest", {"identifier": f"{REF_SYSTEM}|COND-1", "_total": "accurate"})
    assert found.json()["total"] == 1

    assert create(client, token_for, plain_request("COND-2")).status_code == 201
    several = create(
        client, token_for, plain_request("COND-3"), **{"If-None-Exist": "patient:identifier=" + f"{NHS}|9912003888"}
    )
    assert several.status_code == 412, several.text
    assert several.json()["resourceType"] == "OperationOutcome"
    bad = create(client, token_for, plain_request("COND-4"), **{"If-None-Exist": "nonsense=1"})
    assert bad.status_code == 400


def test_if_none_exist_never_matches_another_tenants_referral(client, token_for) -> None:
    send(client, token_for, "OTHER-TENANT", who="demo-gp-b")
    response = create(
        client, token_for, plain_request("OTHER-TENANT"), **{"If-None-Exist": f"identifier={REF_SYSTEM}|OTHER-TENANT"}
    )
    assert response.status_code == 201, response.text


def test_conditional_read_answers_304_and_last_modified_is_an_http_date(client, token_for) -> None:
    sr = send(client, token_for, "CREAD-1")
    read = get(client, token_for, f"/fhir/ServiceRequest/{sr}")
    last_modified = read.headers["last-modified"]
    assert last_modified.endswith(" GMT") and parsedate_to_datetime(last_modified)

    assert get(client, token_for, f"/fhir/ServiceRequest/{sr}", **{"If-None-Match": 'W/"1"'}).status_code == 304
    assert get(client, token_for, f"/fhir/ServiceRequest/{sr}", **{"If-None-Match": 'W/"7"'}).status_code == 200
    assert (
        get(client, token_for, f"/fhir/ServiceRequest/{sr}", **{"If-Modified-Since": last_modified}).status_code == 304
    )
    earlier = format_datetime(parsedate_to_datetime(last_modified).replace(year=2020), usegmt=True)
    assert get(client, token_for, f"/fhir/ServiceRequest/{sr}", **{"If-Modified-Since": earlier}).status_code == 200


def test_a_stale_if_match_after_a_cancellation_is_412(client, token_for) -> None:
    created = create(client, token_for, plain_request("STALE-1")).json()
    cancelled = {**created, "status": "revoked"}
    headers = {**token_for("demo-gp"), "Content-Type": FHIR_JSON, "If-Match": 'W/"1"'}
    assert client.put(f"/fhir/ServiceRequest/{created['id']}", json=cancelled, headers=headers).status_code == 200

    again = client.put(f"/fhir/ServiceRequest/{created['id']}", json=cancelled, headers=headers)

    assert again.status_code == 412, again.text


# -- item 8: Prefer --------------------------------------------------------------------------------


@pytest.mark.parametrize("prefer", ["return=minimal", "return=representation", "return=OperationOutcome"])
def test_prefer_return_is_honoured_on_create_and_update(client, token_for, prefer: str) -> None:
    response = create(client, token_for, plain_request(f"PREFER-{prefer}"), Prefer=prefer)

    assert response.status_code == 201
    assert response.headers["location"] and response.headers["etag"] == 'W/"1"'
    if prefer == "return=minimal":
        assert response.content == b""
    elif prefer == "return=representation":
        assert response.json()["resourceType"] == "ServiceRequest"
    else:
        assert response.json()["resourceType"] == "OperationOutcome"
    location = response.headers["location"].split("/fhir/", 1)[1].split("/_history")[0]
    current = get(client, token_for, f"/fhir/{location}").json()
    updated = client.put(
        f"/fhir/{location}",
        json={**current, "status": "revoked"},
        headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON, "Prefer": prefer},
    )
    assert updated.status_code == 200
    assert (updated.content == b"") == (prefer == "return=minimal")


def test_lenient_handling_ignores_and_reports_unknown_parameters_strict_refuses(client, token_for) -> None:
    send(client, token_for, "LENIENT-1")
    strict = get(client, token_for, "/fhir/ServiceRequest", {"colour": "blue"})
    assert strict.status_code == 400

    lenient = get(client, token_for, "/fhir/ServiceRequest", {"colour": "blue"}, Prefer="handling=lenient")

    assert lenient.status_code == 200
    modes = [e["search"]["mode"] for e in lenient.json()["entry"]]
    assert modes == ["match", "outcome"]
    outcome = lenient.json()["entry"][-1]["resource"]
    assert outcome["resourceType"] == "OperationOutcome" and "colour" in outcome["issue"][0]["diagnostics"]


# -- item 9: search ---------------------------------------------------------------------------------


@pytest.fixture
def referrals(client, token_for) -> dict[str, str]:
    out = {
        "R1": send(client, token_for, "S-R1", ADA, authored="2026-01-15T09:00:00+00:00"),
        "R2": send(client, token_for, "S-R2", ADA, authored="2026-06-15T12:00:00+00:00"),
        "R3": send(client, token_for, "S-R3", BRAM, authored="2026-11-20T10:00:00+00:00"),
    }
    send(client, token_for, "S-OTHER", ADA, who="demo-gp-b")  # another tenant: never counted or included
    return out


def ids(bundle: dict[str, Any], mode: str = "match", rtype: str | None = None) -> list[str]:
    return [
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode and (rtype is None or e["resource"]["resourceType"] == rtype)
    ]


def test_count_only_searches_and_totals_count_the_callers_own(client, token_for, referrals) -> None:
    for params in ({"_summary": "count"}, {"_count": "0"}):
        bundle = get(client, token_for, "/fhir/ServiceRequest", params).json()
        assert bundle["total"] == 3 and "entry" not in bundle
    accurate = get(client, token_for, "/fhir/ServiceRequest", {"_total": "accurate", "_count": "1"}).json()
    assert accurate["total"] == 3 and len(accurate["entry"]) == 1
    assert "total" not in get(client, token_for, "/fhir/ServiceRequest", {"_total": "none"}).json()


def test_sort_by_authored_and_last_updated(client, token_for, referrals) -> None:
    r1, r2, r3 = referrals["R1"], referrals["R2"], referrals["R3"]
    assert ids(get(client, token_for, "/fhir/ServiceRequest", {"_sort": "-authored"}).json()) == [r3, r2, r1]
    assert ids(get(client, token_for, "/fhir/ServiceRequest", {"_sort": "authored"}).json()) == [r1, r2, r3]
    assert ids(get(client, token_for, "/fhir/ServiceRequest", {"_sort": "_lastUpdated"}).json()) == [r1, r2, r3]
    assert ids(get(client, token_for, "/fhir/ServiceRequest", {"_sort": "-_lastUpdated"}).json()) == [r3, r2, r1]
    assert get(client, token_for, "/fhir/ServiceRequest", {"_sort": "status"}).status_code == 400


def test_id_and_last_updated_parameters(client, token_for, referrals) -> None:
    r1, r3 = referrals["R1"], referrals["R3"]
    assert ids(get(client, token_for, "/fhir/ServiceRequest", {"_id": f"{r1},{r3}"}).json()) == [r3, r1]
    stamp = get(client, token_for, f"/fhir/ServiceRequest/{r3}").json()["meta"]["lastUpdated"]
    after = get(client, token_for, "/fhir/ServiceRequest", {"_lastUpdated": f"ge{stamp}"}).json()
    assert ids(after) == [r3]
    assert len(ids(get(client, token_for, "/fhir/ServiceRequest", {"_lastUpdated": "le2020-01-01"}).json())) == 0


def test_include_revinclude_and_based_on_stay_in_the_tenant(client, token_for, referrals) -> None:
    bundle = get(
        client,
        token_for,
        "/fhir/ServiceRequest",
        [("_include", "ServiceRequest:patient"), ("_revinclude", "Task:focus")],
    ).json()
    assert sorted(ids(bundle)) == sorted(referrals.values())
    patients = ids(bundle, "include", "Patient")
    tasks = ids(bundle, "include", "Task")
    assert len(patients) == 2 and len(tasks) == 3  # Ada and Bram once each; one Task per referral
    other = get(client, token_for, "/fhir/Patient", who="demo-gp-b").json()
    assert not set(patients) & set(ids(other))  # demo-gp-b's Ada is never included
    task_focus = {
        e["resource"]["focus"]["reference"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task"
    }
    assert task_focus == {f"ServiceRequest/{i}" for i in referrals.values()}
    assert get(client, token_for, "/fhir/ServiceRequest", {"_include": "ServiceRequest:performer"}).status_code == 400


def test_observation_include_based_on(client, token_for, referrals) -> None:
    bundle = get(client, token_for, "/fhir/Observation", {"_include": "Observation:based-on"})
    assert bundle.status_code == 200 and "entry" not in bundle.json()  # no outcomes yet: nothing to include


def test_elements_and_summary_subset_and_tag(client, token_for, referrals) -> None:
    bundle = get(client, token_for, "/fhir/ServiceRequest", {"_elements": "status", "_id": referrals["R1"]}).json()
    resource = bundle["entry"][0]["resource"]
    assert {"resourceType", "id", "meta", "status", "intent"} <= set(resource)  # intent: mandatory, kept
    assert not {"note", "code", "identifier"} & set(resource)
    assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"
    summary = get(client, token_for, "/fhir/ServiceRequest", {"_summary": "true", "_id": referrals["R1"]}).json()
    resource = summary["entry"][0]["resource"]
    assert "note" not in resource and resource["status"] == "active"
    assert resource["meta"]["tag"][-1]["code"] == "SUBSETTED"


def test_post_search_with_form_parameters(client, token_for, referrals) -> None:
    response = client.post(
        "/fhir/ServiceRequest/_search",
        data={"patient:identifier": f"{NHS}|{BRAM}"},
        headers=token_for("demo-gp"),
    )
    assert response.status_code == 200, response.text
    assert ids(response.json()) == [referrals["R3"]]
    json_body = client.post("/fhir/ServiceRequest/_search", json={}, headers=token_for("demo-gp"))
    assert json_body.status_code == 415


def test_paging_links_keep_the_result_parameters(client, token_for, referrals) -> None:
    bundle = get(client, token_for, "/fhir/ServiceRequest", {"_count": "2", "_sort": "authored"}).json()
    following = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    assert "_sort=authored" in following
    page = client.get(following, headers=token_for("demo-gp")).json()
    assert ids(page) == [referrals["R3"]]


# -- item 10: history -------------------------------------------------------------------------------


def test_instance_history_is_a_history_bundle_newest_first(client, token_for) -> None:
    created = create(client, token_for, plain_request("HIST-1")).json()
    client.put(
        f"/fhir/ServiceRequest/{created['id']}",
        json={**created, "status": "revoked"},
        headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON},
    )

    history = get(client, token_for, f"/fhir/ServiceRequest/{created['id']}/_history").json()

    assert (history["type"], history["total"]) == ("history", 2)
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert [e["resource"]["status"] for e in history["entry"]] == ["revoked", "active"]
    assert [e["request"]["method"] for e in history["entry"]] == ["PUT", "POST"]
    assert get(client, token_for, f"/fhir/ServiceRequest/{created['id']}/_history", who="demo-gp-b").status_code == 404


# -- item 11: content negotiation -------------------------------------------------------------------


def test_format_and_fhir_version_are_406_on_every_route(client, token_for) -> None:
    sr = send(client, token_for, "NEG-1")
    for url in (
        "/fhir/metadata",
        f"/fhir/ServiceRequest/{sr}",
        "/fhir/ServiceRequest",
        f"/fhir/ServiceRequest/{sr}/_history",
    ):
        assert get(client, token_for, url, {"_format": "xml"}).status_code == 406, url
        refused = get(client, token_for, url, Accept="application/fhir+json; fhirVersion=3.0")
        assert refused.status_code == 406, url
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert get(client, token_for, url, Accept="application/fhir+json; fhirVersion=4.0").status_code == 200
        assert get(client, token_for, url, {"_format": "application/fhir+json"}).status_code == 200
    assert get(client, token_for, "/fhir/metadata", Accept="application/fhir+xml").status_code == 406


def test_pretty_head_and_allow(client, token_for) -> None:
    sr = send(client, token_for, "NEG-2")
    pretty = get(client, token_for, f"/fhir/ServiceRequest/{sr}", {"_pretty": "true"})
    assert pretty.text.startswith("{\n  ") and json.loads(pretty.text)["id"] == sr
    assert "\n" not in get(client, token_for, f"/fhir/ServiceRequest/{sr}").text

    head = client.head(f"/fhir/ServiceRequest/{sr}", headers=token_for("demo-gp"))
    full = get(client, token_for, f"/fhir/ServiceRequest/{sr}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == full.headers["etag"]
    assert client.head("/fhir/metadata").status_code == 200

    refused = client.delete(f"/fhir/ServiceRequest/{sr}", headers=token_for("demo-gp"))
    assert refused.status_code == 405
    assert set(refused.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT"}
    refused = client.patch("/fhir/ServiceRequest", headers=token_for("demo-gp"))
    assert set(refused.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


# -- item 12: CapabilityStatement -------------------------------------------------------------------


def test_capability_statement_names_parameters_messaging_and_resolvable_operations(client) -> None:
    statement = client.get("/fhir/metadata").json()
    rest = statement["rest"][0]
    by_type = {r["type"]: r for r in rest["resource"]}
    names = {p["name"] for p in by_type["ServiceRequest"]["searchParam"]}
    assert {"patient", "identifier", "_id", "_lastUpdated", "authored"} <= names
    assert not any(":" in n for r in rest["resource"] for n in (p["name"] for p in r.get("searchParam", [])))
    patient = next(p for p in by_type["ServiceRequest"]["searchParam"] if p["name"] == "patient")
    assert ":identifier" in patient["documentation"]
    assert "ServiceRequest:patient" in by_type["ServiceRequest"]["searchInclude"]
    assert "Task:focus" in by_type["ServiceRequest"]["searchRevInclude"]
    assert by_type["ServiceRequest"]["conditionalCreate"] is True
    (messaging,) = statement["messaging"]
    assert messaging["endpoint"][0]["address"].endswith("/fhir/$process-message")
    assert {m["mode"] for m in messaging["supportedMessage"]} == {"receiver"}
    for resource in rest["resource"]:
        for operation in resource.get("operation", []):
            path = operation["definition"].split("/fhir/", 1)[1]
            found = client.get(f"/fhir/{path}")
            assert found.status_code == 200, operation
            assert found.json()["resourceType"] == "OperationDefinition"
    assert client.get("/fhir/OperationDefinition/nothing").status_code == 404


# -- item 3: requester; item 5: business status after a cancellation -------------------------------


def test_a_plain_create_naming_another_practice_as_requester_is_403(client, token_for) -> None:
    response = create(client, token_for, plain_request("NOT-MINE", requester="B82002"))

    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert "entry" not in get(client, token_for, "/fhir/ServiceRequest", {"identifier": "NOT-MINE"}).json()


def test_after_a_cancellation_the_task_business_status_agrees_with_its_status(client, token_for) -> None:
    bundle = referral_bundle(ADA, "A81001", vcse_id="8VC01", ref_id="CANCEL-BS", consent_to=["8VC01"])
    headers = {**token_for("demo-gp"), "Content-Type": FHIR_JSON}
    sr = next(
        e["resource"]["id"]
        for e in client.post("/fhir/$process-message", json=bundle, headers=headers).json()["entry"]
        if e["resource"]["resourceType"] == "ServiceRequest"
    )
    before = get(client, token_for, "/fhir/Task", {"focus": f"ServiceRequest/{sr}"}).json()["entry"][0]["resource"]
    assert before["businessStatus"]["text"].startswith("offered")
    cancel = copy.deepcopy(bundle)
    cancel["entry"][0]["resource"]["reason"]["coding"][0]["code"] = "update"
    cancel["entry"][1]["resource"]["status"] = "revoked"
    headers = {**token_for("demo-gp"), "Content-Type": FHIR_JSON}
    assert client.post("/fhir/$process-message", json=cancel, headers=headers).status_code == 200

    task = get(client, token_for, "/fhir/Task", {"focus": f"ServiceRequest/{sr}"}).json()["entry"][0]["resource"]

    assert task["status"] == "cancelled"
    assert task["businessStatus"]["text"].startswith("cancelled")


def test_an_include_needs_the_read_scope_of_what_it_includes(client, token_for) -> None:
    # demo-vcse may search Tasks but not read ServiceRequests: including them is refused, not leaked
    response = get(client, token_for, "/fhir/Task", {"_include": "Task:focus"}, who="demo-vcse")

    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
