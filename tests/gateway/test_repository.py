"""Tenant isolation, where it is enforced (gateway.storage.repository.Repository) and through HTTP.

A referrer sees only its own organisation's resources, a VCSE host only the Tasks addressed to it,
an IG officer Consents (clinical resources only when configured), an admin no patient data; a
resource out of sight is "not found" (404), never 403, and never turns up in a search.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session

from gateway.auth.principal import ROLE_SCOPES, Principal, Role
from gateway.models import Packet, Referral
from gateway.schema import init_db
from gateway.storage.repository import Repository
from profiles.outcomes import FhirError
from tests.profiles.gp_message import referral_bundle

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
FHIR_JSON = "application/fhir+json"


def principal(client_id: str, organisation: str, role: Role) -> Principal:
    return Principal(client_id, organisation, role, frozenset(ROLE_SCOPES[role]))


GP_A = principal("demo-gp", "A81001", Role.REFERRER)
GP_B = principal("demo-gp-b", "B82002", Role.REFERRER)
VCSE_1 = principal("demo-vcse", "8VC01", Role.VCSE)
IG = principal("demo-ig", "QJM", Role.IG_OFFICER)
ADMIN = principal("demo-admin", "QJM", Role.ADMIN)


def service_request(ref: str, nhs: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "https://gp.example.nhs.uk/referrals", "value": ref}],
        "status": "active",
        "intent": "plan",
        "subject": {"identifier": {"system": NHS, "value": nhs}},
    }


def task(ref: str, owner: str) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "identifier": [{"system": "https://sp-gateway.example/referral-id", "value": ref}],
        "status": "requested",
        "intent": "order",
        "owner": {"identifier": {"system": ODS, "value": owner}},
    }


def consent(nhs: str) -> dict[str, Any]:
    return {"resourceType": "Consent", "status": "active", "patient": {"identifier": {"system": NHS, "value": nhs}}}


@pytest.fixture
def session(engine) -> Iterator[Session]:
    init_db(engine)
    with Session(engine) as db:
        yield db


@pytest.fixture
def stored(session) -> dict[str, str]:
    """Resources of two practices, created by the gateway itself (principal None); returns name -> id."""
    gateway = Repository(session, None)
    made = {
        "sr_a": gateway.create(service_request("A-1", "9990001006"), tenant="A81001", audience="8VC01"),
        "task_a_vcse1": gateway.create(task("SPR-A1", "8VC01"), tenant="A81001", audience="8VC01"),
        "task_a_vcse2": gateway.create(task("SPR-A2", "8VC02"), tenant="A81001", audience="8VC02"),
        "consent_a": gateway.create(consent("9990001006"), tenant="A81001"),
        "patient_a": gateway.create(
            {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9990001006"}]}, tenant="A81001"
        ),
        "sr_b": gateway.create(service_request("B-1", "9990001014"), tenant="B82002", audience="8VC01"),
        "task_b_vcse1": gateway.create(task("SPR-B1", "8VC01"), tenant="B82002", audience="8VC01"),
        "consent_b": gateway.create(consent("9990001014"), tenant="B82002"),
    }
    # A host sees a Task once a packet for its referral was issued to it: one each for the 8VC01 Tasks.
    for name, tenant in (("task_a_vcse1", "A81001"), ("task_b_vcse1", "B82002")):
        referral_id = f"SPR-{name.upper()}"
        session.add(
            Referral(
                referral_id=referral_id,
                service_request_id=made["sr_a" if tenant == "A81001" else "sr_b"].resource["id"],
                task_id=made[name].resource["id"],
                tenant=tenant,
                patient_id="-",
                patient_nhs="9990001006",
                recipient="8VC01",
            )
        )
        session.flush()
        session.add(
            Packet(packet_id=f"PKT-{name}", referral_id=referral_id, recipient="8VC01", kind="referral", body={})
        )
    session.commit()
    return {name: s.resource["id"] for name, s in made.items()}


def ids_found(repo: Repository, rtype: str, params: list[tuple[str, str]] | None = None) -> set[str]:
    items, _ = repo.search(rtype, params or [], count=100, offset=0)
    return {s.resource["id"] for s in items}


def assert_not_found(repo: Repository, rtype: str, rid: str) -> None:
    with pytest.raises(FhirError) as caught:
        repo.read(rtype, rid)
    assert caught.value.status == 404


def test_referrer_reads_and_finds_only_its_own_organisations_resources(session, stored) -> None:
    repo = Repository(session, GP_A)

    assert repo.read("ServiceRequest", stored["sr_a"]).tenant == "A81001"
    assert_not_found(repo, "ServiceRequest", stored["sr_b"])
    assert_not_found(repo, "Task", stored["task_b_vcse1"])
    assert_not_found(repo, "Consent", stored["consent_b"])
    assert ids_found(repo, "ServiceRequest") == {stored["sr_a"]}
    assert ids_found(repo, "ServiceRequest", [("identifier", "B-1")]) == set()
    assert ids_found(repo, "ServiceRequest", [("patient:identifier", f"{NHS}|9990001014")]) == set()
    assert ids_found(repo, "Task") == {stored["task_a_vcse1"], stored["task_a_vcse2"]}
    assert ids_found(repo, "Consent") == {stored["consent_a"]}
    other = Repository(session, GP_B)
    assert ids_found(other, "ServiceRequest") == {stored["sr_b"]}


def test_referrer_cannot_update_or_version_read_another_practices_resource(session, stored) -> None:
    repo = Repository(session, GP_B)

    with pytest.raises(FhirError) as update:
        repo.update("ServiceRequest", stored["sr_a"], {**service_request("A-1", "9990001006"), "status": "revoked"})
    with pytest.raises(FhirError) as vread:
        repo.read_version("ServiceRequest", stored["sr_a"], 1)

    assert (update.value.status, vread.value.status) == (404, 404)
    assert Repository(session, GP_A).read("ServiceRequest", stored["sr_a"]).resource["status"] == "active"


def test_vcse_host_sees_only_tasks_addressed_to_it_from_any_practice(session, stored) -> None:
    repo = Repository(session, VCSE_1)

    assert ids_found(repo, "Task") == {stored["task_a_vcse1"], stored["task_b_vcse1"]}
    assert repo.read("Task", stored["task_b_vcse1"]).tenant == "B82002"
    assert_not_found(repo, "Task", stored["task_a_vcse2"])
    # the ServiceRequest is addressed to it too, but a host sees the referral only as its Task / packet
    assert_not_found(repo, "ServiceRequest", stored["sr_a"])
    assert ids_found(repo, "ServiceRequest") == set()
    assert ids_found(repo, "Patient") == set()
    assert ids_found(repo, "Consent") == set()


def test_ig_officer_sees_consents_of_every_practice_but_no_clinical_resources(session, stored) -> None:
    repo = Repository(session, IG)

    assert ids_found(repo, "Consent") == {stored["consent_a"], stored["consent_b"]}
    assert repo.read("Consent", stored["consent_b"]).resource["status"] == "active"
    for rtype, name in (("ServiceRequest", "sr_a"), ("Task", "task_a_vcse1"), ("Patient", "patient_a")):
        assert_not_found(repo, rtype, stored[name])
        assert ids_found(repo, rtype) == set()


def test_ig_officer_reads_clinical_resources_only_when_configured(session, stored) -> None:
    repo = Repository(session, IG, ig_reads_clinical=True)

    assert ids_found(repo, "ServiceRequest") == {stored["sr_a"], stored["sr_b"]}
    assert repo.read("Patient", stored["patient_a"]).tenant == "A81001"


def test_admin_sees_no_patient_data(session, stored) -> None:
    repo = Repository(session, ADMIN)

    for rtype in ("ServiceRequest", "Task", "Consent", "Patient"):
        assert ids_found(repo, rtype) == set()
    for name, rid in stored.items():
        rtype = {"sr": "ServiceRequest", "task": "Task", "consent": "Consent", "patient": "Patient"}[name.split("_")[0]]
        assert_not_found(repo, rtype, rid)


def test_update_versions_the_resource_and_reindexes_its_search_tokens(session, stored) -> None:
    repo = Repository(session, GP_A)
    current = repo.read("ServiceRequest", stored["sr_a"])

    updated = repo.update("ServiceRequest", stored["sr_a"], {**current.resource, "status": "revoked"}, if_match=1)

    assert (updated.version_id, updated.resource["meta"]["versionId"]) == (2, "2")
    assert repo.read_version("ServiceRequest", stored["sr_a"], 1)["status"] == "active"
    assert ids_found(repo, "ServiceRequest", [("status", "revoked")]) == {stored["sr_a"]}
    assert ids_found(repo, "ServiceRequest", [("status", "active")]) == set()
    with pytest.raises(FhirError) as stale:
        repo.update("ServiceRequest", stored["sr_a"], current.resource, if_match=1)
    assert stale.value.status == 412


def test_unknown_search_parameter_is_refused_before_any_query(session, stored) -> None:
    with pytest.raises(FhirError) as caught:
        Repository(session, GP_A).search("ServiceRequest", [("name", "x")], count=10, offset=0)

    assert caught.value.status == 400
    assert caught.value.issues[0].expression == "name"


# -- through HTTP -----------------------------------------------------------------------------------


def _send(client, token_for, client_id: str, gp_ods: str, nhs: str, ref: str, vcse: str) -> dict[str, dict[str, Any]]:
    response = client.post(
        "/fhir/$process-message",
        json=referral_bundle(nhs, gp_ods, vcse_id=vcse, ref_id=ref, consent_to=[vcse]),
        headers={**token_for(client_id), "Content-Type": FHIR_JSON},
    )
    assert response.status_code == 200, response.text
    return {e["resource"]["resourceType"]: e["resource"] for e in response.json()["entry"]}


def test_another_practice_cannot_read_search_or_cancel_a_referral_over_http(client, token_for) -> None:
    mine = _send(client, token_for, "demo-gp", "A81001", "9990001006", "ISOLATED", "8VC01")
    sr = mine["ServiceRequest"]
    other = token_for("demo-gp-b")

    for path in (
        f"/fhir/ServiceRequest/{sr['id']}",
        f"/fhir/ServiceRequest/{sr['id']}/_history/1",
        f"/fhir/Patient/{mine['Patient']['id']}",
        f"/fhir/Task/{mine['Task']['id']}",
    ):
        response = client.get(path, headers=other)
        assert response.status_code == 404, path
        assert response.json()["issue"][0]["code"] == "not-found"
    for params in ({"identifier": "ISOLATED"}, {"patient:identifier": f"{NHS}|9990001006"}, {}):
        assert client.get("/fhir/ServiceRequest", params=params, headers=other).json().get("entry", []) == []
    assert client.get("/fhir/Task", headers=other).json().get("entry", []) == []
    cancel = client.put(
        f"/fhir/ServiceRequest/{sr['id']}",
        json={**sr, "status": "revoked"},
        headers={**other, "Content-Type": FHIR_JSON},
    )
    assert cancel.status_code == 404
    read = client.get(f"/fhir/ServiceRequest/{sr['id']}", headers=token_for("demo-gp"))
    assert (read.json()["status"], read.headers["etag"]) == ("active", 'W/"1"')


def test_the_same_nhs_number_at_two_practices_stays_two_separate_records(client, token_for) -> None:
    a = _send(client, token_for, "demo-gp", "A81001", "9990001006", "SHARED-A", "8VC01")
    b = _send(client, token_for, "demo-gp-b", "B82002", "9990001006", "SHARED-B", "8VC01")

    assert a["Patient"]["id"] != b["Patient"]["id"]
    for client_id, mine in (("demo-gp", a), ("demo-gp-b", b)):
        found = client.get(
            "/fhir/ServiceRequest", params={"patient:identifier": f"{NHS}|9990001006"}, headers=token_for(client_id)
        ).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [mine["ServiceRequest"]["id"]]


def test_vcse_host_reads_only_its_own_tasks_over_http(client, token_for) -> None:
    sent = _send(client, token_for, "demo-gp", "A81001", "9990001014", "FOR-VC01", "8VC01")
    task_path = f"/fhir/Task/{sent['Task']['id']}"

    assert client.get(task_path, headers=token_for("demo-vcse")).status_code == 200
    assert client.get(task_path, headers=token_for("demo-vcse-b")).status_code == 404
    assert client.get("/fhir/Task", headers=token_for("demo-vcse-b")).json().get("entry", []) == []
    # a host's token carries no ServiceRequest scope at all
    sr_read = client.get(f"/fhir/ServiceRequest/{sent['ServiceRequest']['id']}", headers=token_for("demo-vcse"))
    assert sr_read.status_code == 403
