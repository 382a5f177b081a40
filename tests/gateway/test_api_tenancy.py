"""Tenant isolation through HTTP: each caller sees its own organisation's data and nothing else.

A resource outside the caller's tenant is "not found" (404), never "forbidden" (403), so that ids
cannot be probed; a search never returns another tenant's rows. Every test sets up a referral from
practice A (demo-gp, A81001) to VCSE host 8VC01 (demo-vcse) and checks the owner sees it before
checking the others do not, so that a test cannot pass on an empty database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from gateway.auth.principal import Principal, Role
from gateway.auth.tokens import issue_access_token
from tests.profiles.gp_message import referral_bundle

FHIR_JSON = "application/fhir+json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
REF_SYSTEM = "https://gp.example.nhs.uk/referrals"
PATIENT = "9990001006"  # fictitious, in the 999 test range
GIVEN = "Philippa"


@dataclass(frozen=True)
class Referral:
    service_request: str
    patient: str
    task: str
    referral_id: str  # the pseudonymous id the VCSE host knows


def submit(client, headers: dict[str, str], gp_ods: str, ref_id: str) -> dict[str, str]:
    bundle = referral_bundle(PATIENT, gp_ods, vcse_id="8VC01", ref_id=ref_id, consent_to=["8VC01"], given=GIVEN)
    response = client.post("/fhir/$process-message", json=bundle, headers={**headers, "Content-Type": FHIR_JSON})
    assert response.status_code == 200, response.text
    return {e["resource"]["resourceType"]: e["resource"]["id"] for e in response.json()["entry"]}


@pytest.fixture
def referral_a(client, token_for) -> Referral:
    """Practice A's referral, and practice B's own referral of the same patient (so B has rows to see)."""
    ids = submit(client, token_for("demo-gp"), "A81001", "TEN-A")
    submit(client, token_for("demo-gp-b"), "B82002", "TEN-B")
    packets = client.get("/vcse/v1/referrals", headers=token_for("demo-vcse")).json()["referrals"]
    (referral_id,) = [p["referral_id"] for p in packets if p["referrer"]["organisation"] == "A81001"]
    return Referral(ids["ServiceRequest"], ids["Patient"], ids["Task"], referral_id)


def assert_not_found(response) -> None:
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "not-found"


def ids_in(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json().get("entry", [])}


def minted(app, client_id: str, organisation: str, role: Role, scopes: set[str]) -> dict[str, str]:
    """Headers with a gateway-signed token carrying scopes beyond the role's ceiling: what a wrong
    ROLE_SCOPES entry would hand out. The repository's tenant rule must still hide the data."""
    principal = Principal(client_id, organisation, role, frozenset(scopes))
    token = issue_access_token(app.state.spgw.token_keys, principal, issuer="http://testserver", ttl=300)
    return {"Authorization": f"Bearer {token}"}


# -- practice B cannot reach practice A's referral ---------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/fhir/ServiceRequest/{sr}",
        "/fhir/ServiceRequest/{sr}/_history/1",
        "/fhir/ServiceRequest/{sr}/$everything",
        "/fhir/Patient/{patient}",
        "/fhir/Patient/{patient}/_history/1",
        "/fhir/Task/{task}",
    ],
)
def test_another_practice_gets_404_for_a_referral_and_its_patient_and_task(
    client, token_for, referral_a: Referral, path: str
) -> None:
    url = path.format(sr=referral_a.service_request, patient=referral_a.patient, task=referral_a.task)
    assert client.get(url, headers=token_for("demo-gp")).status_code == 200  # the owner sees it

    assert_not_found(client.get(url, headers=token_for("demo-gp-b")))


def test_another_practice_cannot_cancel_a_referral_and_it_stays_active(client, token_for, referral_a: Referral) -> None:
    url = f"/fhir/ServiceRequest/{referral_a.service_request}"
    current = client.get(url, headers=token_for("demo-gp")).json()
    cancelled = {**current, "status": "revoked"}

    response = client.put(url, json=cancelled, headers={**token_for("demo-gp-b"), "Content-Type": FHIR_JSON})

    assert_not_found(response)
    after = client.get(url, headers=token_for("demo-gp")).json()
    assert (after["status"], after["meta"]["versionId"]) == ("active", "1")


@pytest.mark.parametrize(
    ("resource", "params"),
    [
        ("ServiceRequest", {"patient:identifier": f"{NHS}|{PATIENT}"}),
        ("ServiceRequest", {"identifier": f"{REF_SYSTEM}|TEN-A"}),
        ("ServiceRequest", {}),
        ("Patient", {"identifier": f"{NHS}|{PATIENT}"}),
        ("Patient", {}),
        ("Task", {}),
    ],
)
def test_a_search_by_another_practice_never_includes_the_referring_practices_rows(
    client, token_for, referral_a: Referral, resource: str, params: dict[str, str]
) -> None:
    a_ids = {referral_a.service_request, referral_a.patient, referral_a.task}
    assert ids_in(client.get(f"/fhir/{resource}", params=params, headers=token_for("demo-gp"))) & a_ids

    seen_by_b = ids_in(client.get(f"/fhir/{resource}", params=params, headers=token_for("demo-gp-b")))

    assert not seen_by_b & a_ids
    if "identifier" not in params:  # B's own referral of the same patient is what B finds
        assert seen_by_b


def test_a_patient_search_finds_only_the_callers_own_referral_of_a_shared_patient(
    client, token_for, referral_a: Referral
) -> None:
    params = {"patient:identifier": f"{NHS}|{PATIENT}"}

    for_a = client.get("/fhir/ServiceRequest", params=params, headers=token_for("demo-gp")).json().get("entry", [])
    for_b = client.get("/fhir/ServiceRequest", params=params, headers=token_for("demo-gp-b")).json().get("entry", [])

    assert [e["resource"]["id"] for e in for_a] == [referral_a.service_request]
    assert [e["resource"]["identifier"][0]["value"] for e in for_b] == ["TEN-B"]


# -- a VCSE host cannot reach a referral addressed to another host ----------------------------------


def test_another_vcse_host_does_not_see_the_referral_in_its_list(client, token_for, referral_a: Referral) -> None:
    own = client.get("/vcse/v1/referrals", headers=token_for("demo-vcse")).json()["referrals"]
    assert referral_a.referral_id in [p["referral_id"] for p in own]

    other = client.get("/vcse/v1/referrals", headers=token_for("demo-vcse-b"))

    assert other.status_code == 200
    assert (other.json()["referrals"], other.json()["count"]) == ([], 0)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/vcse/v1/referrals/{rid}", None),
        ("POST", "/vcse/v1/referrals/{rid}/status", {"status": "accepted"}),
        ("POST", "/vcse/v1/referrals/{rid}/outcomes", {"submission_id": "s-1", "stage": "baseline"}),
    ],
)
def test_another_vcse_host_gets_404_reading_or_changing_the_referral(
    client, token_for, referral_a: Referral, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = client.request(
        method, path.format(rid=referral_a.referral_id), json=body, headers=token_for("demo-vcse-b")
    )

    assert_not_found(response)
    own = client.get(f"/vcse/v1/referrals/{referral_a.referral_id}", headers=token_for("demo-vcse"))
    assert own.status_code == 200
    assert own.json()["status"] == "new"  # nothing changed


def test_a_vcse_host_reads_only_the_tasks_addressed_to_it(client, token_for, referral_a: Referral) -> None:
    url = f"/fhir/Task/{referral_a.task}"
    assert client.get(url, headers=token_for("demo-vcse")).status_code == 200

    assert_not_found(client.get(url, headers=token_for("demo-vcse-b")))
    assert referral_a.task not in ids_in(client.get("/fhir/Task", headers=token_for("demo-vcse-b")))


def test_a_referrer_reaches_no_packets_through_the_vcse_api(client, token_for, referral_a: Referral) -> None:
    # A referrer's token carries system/Task.rs, which the VCSE list and read routes ask for; the
    # packets are addressed to hosts, so a practice still sees none of them.
    listed = client.get("/vcse/v1/referrals", headers=token_for("demo-gp"))

    assert (listed.json()["referrals"], listed.json()["count"]) == ([], 0)
    assert_not_found(client.get(f"/vcse/v1/referrals/{referral_a.referral_id}", headers=token_for("demo-gp")))


# -- IG officers and admins -----------------------------------------------------------------------


def test_an_ig_officer_searches_consents_but_not_referrals(client, token_for, referral_a: Referral) -> None:
    consents = client.get("/fhir/Consent", headers=token_for("demo-ig"))
    assert consents.status_code == 200, consents.text
    assert consents.json()["entry"]

    referrals = client.get("/fhir/ServiceRequest", headers=token_for("demo-ig"))

    assert referrals.status_code == 403
    assert referrals.json()["issue"][0]["code"] == "forbidden"


def test_an_ig_officer_sees_no_clinical_rows_even_with_a_wider_scope_by_default(
    app, client, referral_a: Referral
) -> None:
    assert app.state.spgw.settings.ig_reads_clinical is False
    headers = minted(app, "demo-ig", "QJM", Role.IG_OFFICER, {"system/ServiceRequest.rs", "system/Patient.rs"})

    assert ids_in(client.get("/fhir/ServiceRequest", headers=headers)) == set()
    assert_not_found(client.get(f"/fhir/ServiceRequest/{referral_a.service_request}", headers=headers))
    assert_not_found(client.get(f"/fhir/Patient/{referral_a.patient}", headers=headers))


def test_ig_reads_clinical_is_what_opens_clinical_rows_to_an_ig_officer(app, client, referral_a: Referral) -> None:
    headers = minted(app, "demo-ig", "QJM", Role.IG_OFFICER, {"system/ServiceRequest.rs"})
    app.state.spgw.settings.ig_reads_clinical = True

    found = ids_in(client.get("/fhir/ServiceRequest", headers=headers))

    assert referral_a.service_request in found


@pytest.mark.parametrize("path", ["/fhir/Patient/{patient}", "/fhir/ServiceRequest", "/fhir/Patient", "/fhir/Task"])
def test_an_admin_reads_no_patient_data(client, token_for, referral_a: Referral, path: str) -> None:
    response = client.get(path.format(patient=referral_a.patient), headers=token_for("demo-admin"))

    assert response.status_code == 403, response.text
    assert response.json()["issue"][0]["code"] == "forbidden"


def test_an_admin_sees_no_patient_rows_even_with_a_wider_scope(app, client, referral_a: Referral) -> None:
    headers = minted(app, "demo-admin", "QJM", Role.ADMIN, {"system/Patient.rs", "system/ServiceRequest.rs"})

    assert ids_in(client.get("/fhir/Patient", headers=headers)) == set()
    assert_not_found(client.get(f"/fhir/Patient/{referral_a.patient}", headers=headers))


def test_the_admin_api_answers_carry_no_patient_identifiers(client, token_for, referral_a: Referral) -> None:
    for path in ("/admin/v1/organisations", "/admin/v1/clients", "/admin/v1/outbox"):
        response = client.get(path, headers=token_for("demo-admin"))
        assert response.status_code == 200, response.text
        assert PATIENT not in response.text
        assert GIVEN not in response.text


def test_an_ig_officer_reads_clinical_payloads_only_where_the_deployment_allows_it(tmp_path, monkeypatch) -> None:
    """SPGW_IG_READS_CLINICAL widens the IG ceiling (registration and token) and the repository together."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.auth.client_side import make_client_assertion
    from gateway.auth.clients import add_client
    from gateway.auth.principal import IG_CLINICAL_SCOPES, Role
    from gateway.cli.run import prepare
    from gateway.demo import seed_directory
    from gateway.settings import Settings

    def ig_client_sees_referrals(allowed: bool) -> int:
        settings = Settings(data_dir=tmp_path / f"d{allowed}", ig_reads_clinical=allowed)
        prepare(settings)  # `spgw migrate`: create_app changes nothing
        app = create_app(settings)
        engine = app.state.spgw.engine
        seed_directory(engine, settings)
        key = tmp_path / f"ig-{allowed}.jwk"
        from sqlmodel import Session

        with Session(engine) as session:
            add_client(
                session,
                client_id="ig-clinical",
                organisation_id="QJM",
                role=Role.IG_OFFICER,
                scopes=["system/AuditEvent.rs", *IG_CLINICAL_SCOPES],
                private_key_out=key,
                ig_reads_clinical=allowed,
            )
            session.commit()
        with TestClient(app, base_url="http://testserver") as client:
            import json

            assertion = make_client_assertion(
                client_id="ig-clinical",
                private_jwk=json.loads(key.read_text()),
                token_url="http://testserver/oauth2/token",
            )
            token = client.post(
                "/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": assertion,
                },
            ).json()["access_token"]
            return client.get("/fhir/ServiceRequest", headers={"Authorization": f"Bearer {token}"}).status_code

    import pytest

    assert ig_client_sees_referrals(True) == 200
    with pytest.raises(ValueError, match="ceiling"):
        ig_client_sees_referrals(False)
