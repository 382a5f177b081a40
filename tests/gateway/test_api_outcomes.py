"""VCSE outcomes back to the GP record, through the real HTTP interface on both backends.

A GP refers (a message whose Consent and performer name 8VC01), the VCSE host lists and accepts
the referral, then POSTs an outcome submission to /vcse/v1/referrals/{id}/outcomes. The gateway
re-identifies the patient and stores coded Observations the GP finds with FHIR search; a retry
stores nothing twice, bad submissions are refused field by field, and a final assessment after a
baseline adds "distance travelled". The VCSE side never sees the NHS number.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from tests.profiles.gp_message import referral_bundle

FHIR_JSON = "application/fhir+json"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
MESSAGE = "/fhir/$process-message"
GP = "A81001"  # demo-gp's practice
HOST = "8VC01"  # demo-vcse's organisation
SNOMED = "http://snomed.info/sct"

BASELINE: dict[str, Any] = {
    "submission_id": "sub-001",
    "recorded_at": "2026-12-01T10:00:00Z",
    "stage": "baseline",
    "ons4": {"life_satisfaction": 4, "worthwhile": 5, "happiness": 3, "anxiety": 7},
    "swemwbs": {"items": [2, 3, 2, 3, 3, 2, 3]},
    "pam": {"level": 2, "score": 51.0},
}
FINAL: dict[str, Any] = {
    "submission_id": "sub-002",
    "recorded_at": "2027-03-01T10:00:00Z",
    "stage": "final",
    "ons4": {"life_satisfaction": 7, "worthwhile": 7, "happiness": 6, "anxiety": 4},
    "swemwbs": {"items": [4, 4, 3, 4, 4, 4, 4]},
    "pam": {"level": 3, "score": 62.0},
}


@dataclass
class Referred:
    """One referral made by demo-gp and seen by demo-vcse."""

    nhs: str
    referral_id: str
    service_request_id: str
    patient_id: str


class VcseSide:
    """Every call demo-vcse makes, kept so a test can show the NHS number never crossed to the VCSE."""

    def __init__(self, client, token_for) -> None:
        self.client, self.token_for = client, token_for
        self.exchanges: list[tuple[str, str]] = []  # (request text, response text)

    def call(self, method: str, url: str, body: dict[str, Any] | None = None, client_id: str = "demo-vcse"):
        response = self.client.request(method, url, json=body, headers=self.token_for(client_id))
        self.exchanges.append((f"{method} {url} {body!r}", response.text))
        return response

    def outcomes(self, referral_id: str, body: dict[str, Any], client_id: str = "demo-vcse"):
        return self.call("POST", f"/vcse/v1/referrals/{referral_id}/outcomes", body, client_id)

    def set_status(self, referral_id: str, status: str):
        return self.call("POST", f"/vcse/v1/referrals/{referral_id}/status", {"status": status})


def refer(client, token_for, vcse: VcseSide, nhs: str, ref_id: str) -> Referred:
    """Returns the referral after demo-gp sent it and demo-vcse found it in its list (not yet accepted)."""
    bundle = referral_bundle(nhs, GP, vcse_id=HOST, ref_id=ref_id, consent_to=[HOST])
    sent = client.post(MESSAGE, json=bundle, headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON})
    assert sent.status_code == 200, sent.text
    stored = {e["resource"]["resourceType"]: e["resource"] for e in sent.json()["entry"]}
    listed = vcse.call("GET", "/vcse/v1/referrals?status=new")
    assert listed.status_code == 200, listed.text
    task_ids = {stored["Task"]["identifier"][0]["value"]}
    mine = [r for r in listed.json()["referrals"] if r["referral_id"] in task_ids]
    assert len(mine) == 1, listed.text
    return Referred(nhs, mine[0]["referral_id"], stored["ServiceRequest"]["id"], stored["Patient"]["id"])


@pytest.fixture
def vcse(client, token_for) -> VcseSide:
    return VcseSide(client, token_for)


@pytest.fixture
def accepted(client, token_for, vcse) -> Referred:
    referral = refer(client, token_for, vcse, "9990001006", "OUT-1")
    response = vcse.set_status(referral.referral_id, "accepted")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    return referral


def gp_search(client, token_for, **params: str) -> list[dict[str, Any]]:
    response = client.get("/fhir/Observation", params=params, headers=token_for("demo-gp"))
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def observations_of(client, token_for, referral: Referred) -> list[dict[str, Any]]:
    return gp_search(client, token_for, **{"based-on": f"ServiceRequest/{referral.service_request_id}"})


def ids(resources: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in resources}


def expressions(outcome: dict[str, Any]) -> list[str]:
    return [e for issue in outcome["issue"] for e in issue.get("expression", [])]


# -- the happy path ---------------------------------------------------------------------------


def test_outcome_submission_becomes_valid_coded_observations_about_the_referred_patient(
    client, token_for, vcse, accepted
) -> None:
    response = vcse.outcomes(accepted.referral_id, BASELINE)

    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["submission_id"] == "sub-001"
    assert len(answer["observations"]) == 3
    found = observations_of(client, token_for, accepted)
    assert {f"Observation/{i}" for i in ids(found)} == set(answer["observations"])
    for obs in found:
        Observation.model_validate(obs)  # raises if it is not a structurally valid R4(B) Observation
        assert obs["status"] == "final"
        assert obs["code"]["coding"] and all(c["system"] and c["code"] for c in obs["code"]["coding"])
        assert obs["category"][0]["coding"][0]["code"] == "survey"
        assert obs["subject"]["reference"] == f"Patient/{accepted.patient_id}"
        assert obs["subject"]["identifier"] == {"system": NHS_SYSTEM, "value": accepted.nhs}
        assert obs["basedOn"] == [{"reference": f"ServiceRequest/{accepted.service_request_id}"}]
        assert obs["performer"][0]["identifier"] == {"system": ODS, "value": HOST}
        assert obs["effectiveDateTime"] == "2026-12-01T10:00:00Z"
    by_measure = {o["identifier"][0]["value"].split("/")[-1]: o for o in found}
    assert set(by_measure) == {"ons4", "swemwbs", "pam"}
    assert by_measure["swemwbs"]["valueQuantity"]["value"] == sum(BASELINE["swemwbs"]["items"])
    assert len(by_measure["ons4"]["component"]) == 4


def test_gp_finds_outcomes_by_nhs_number_code_category_identifier_and_date(client, token_for, vcse, accepted) -> None:
    assert vcse.outcomes(accepted.referral_id, BASELINE).status_code == 201
    everything = ids(observations_of(client, token_for, accepted))
    swemwbs = next(o for o in observations_of(client, token_for, accepted) if o["id"].endswith("-swemwbs"))
    coding = swemwbs["code"]["coding"][0]

    assert ids(gp_search(client, token_for, **{"patient:identifier": f"{NHS_SYSTEM}|{accepted.nhs}"})) == everything
    assert ids(gp_search(client, token_for, code=f"{coding['system']}|{coding['code']}")) == {swemwbs["id"]}
    assert ids(gp_search(client, token_for, category="survey")) == everything
    ident = swemwbs["identifier"][0]
    assert ids(gp_search(client, token_for, identifier=f"{ident['system']}|{ident['value']}")) == {swemwbs["id"]}
    assert ids(gp_search(client, token_for, date="2026-12-01")) == everything
    assert gp_search(client, token_for, date="2026-12-02") == []
    based_on = {"based-on": f"ServiceRequest/{accepted.service_request_id}"}
    assert ids(gp_search(client, token_for, date="ge2026-11-30", **based_on)) == everything


def test_outcomes_belong_to_the_referring_practice_only(client, token_for, vcse, accepted) -> None:
    assert vcse.outcomes(accepted.referral_id, BASELINE).status_code == 201

    other_gp = client.get(
        "/fhir/Observation",
        params={"patient:identifier": f"{NHS_SYSTEM}|{accepted.nhs}"},
        headers=token_for("demo-gp-b"),
    )
    assert other_gp.status_code == 200
    assert other_gp.json().get("entry", []) == []


# -- retries and conflicts --------------------------------------------------------------------


def test_identical_retry_answers_200_and_stores_no_new_observations(client, token_for, vcse, accepted) -> None:
    first = vcse.outcomes(accepted.referral_id, BASELINE)
    before = observations_of(client, token_for, accepted)

    again = vcse.outcomes(accepted.referral_id, copy.deepcopy(BASELINE))

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["observations"] == first.json()["observations"]
    after = observations_of(client, token_for, accepted)
    assert len(after) == len(before) == 3
    assert [o["meta"]["versionId"] for o in after] == ["1", "1", "1"]


def test_same_submission_id_with_different_content_is_409(client, token_for, vcse, accepted) -> None:
    assert vcse.outcomes(accepted.referral_id, BASELINE).status_code == 201
    changed = copy.deepcopy(BASELINE)
    changed["pam"]["score"] = 55.0

    response = vcse.outcomes(accepted.referral_id, changed)

    assert response.status_code == 409, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "sub-001" in response.json()["issue"][0]["diagnostics"]
    assert len(observations_of(client, token_for, accepted)) == 3


# -- refusals ---------------------------------------------------------------------------------


def test_ons4_score_of_11_is_422_naming_life_satisfaction(client, token_for, vcse, accepted) -> None:
    bad = copy.deepcopy(BASELINE)
    bad["ons4"]["life_satisfaction"] = 11

    response = vcse.outcomes(accepted.referral_id, bad)

    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert expressions(outcome) == ["ons4.life_satisfaction"]
    assert "between 0 and 10" in outcome["issue"][0]["diagnostics"]
    assert observations_of(client, token_for, accepted) == []


def test_swemwbs_with_a_missing_item_is_422(client, token_for, vcse, accepted) -> None:
    bad = copy.deepcopy(BASELINE)
    bad["swemwbs"]["items"] = bad["swemwbs"]["items"][:6]

    response = vcse.outcomes(accepted.referral_id, bad)

    assert response.status_code == 422, response.text
    assert expressions(response.json()) == ["swemwbs.items"]
    assert "exactly 7" in response.json()["issue"][0]["diagnostics"]
    assert observations_of(client, token_for, accepted) == []


def test_outcomes_for_a_referral_another_host_owns_are_404(client, token_for, vcse, accepted) -> None:
    response = vcse.outcomes(accepted.referral_id, BASELINE, client_id="demo-vcse-b")

    assert response.status_code == 404, response.text
    assert response.json()["issue"][0]["code"] == "not-found"
    assert observations_of(client, token_for, accepted) == []


def test_outcomes_before_the_host_accepted_the_referral_are_409(client, token_for, vcse) -> None:
    referral = refer(client, token_for, vcse, "9990001014", "OUT-NEW")

    response = vcse.outcomes(referral.referral_id, BASELINE)

    assert response.status_code == 409, response.text
    assert "accepted" in response.json()["issue"][0]["diagnostics"]
    assert observations_of(client, token_for, referral) == []


# -- distance travelled and completion --------------------------------------------------------


def test_final_submission_after_baseline_adds_distance_travelled_derived_from_both(
    client, token_for, vcse, accepted
) -> None:
    baseline = vcse.outcomes(accepted.referral_id, BASELINE).json()

    final = vcse.outcomes(accepted.referral_id, FINAL)

    assert final.status_code == 201, final.text
    answer = final.json()
    changes = {c["measure"]: c for c in answer["distance_travelled"]}
    # one change per measure in both submissions: SWEMWBS metric, the four ONS4 answers, PAM score and level
    assert set(changes) == {"swemwbs.metric", *(f"ons4.{n}" for n in BASELINE["ons4"]), "pam.score", "pam.level"}
    assert changes["swemwbs.metric"]["final"] > changes["swemwbs.metric"]["baseline"]
    assert changes["ons4.anxiety"]["change"] == -3
    found = {o["id"]: o for o in observations_of(client, token_for, accepted)}
    baseline_ids = {r.removeprefix("Observation/") for r in baseline["observations"]}
    final_ids = {r.removeprefix("Observation/") for r in answer["observations"]}
    derived = [found[i] for i in final_ids if "derivedFrom" in found[i]]
    assert len(derived) == len(changes)
    for obs in derived:
        Observation.model_validate(obs)
        sources = [d["reference"].removeprefix("Observation/") for d in obs["derivedFrom"]]
        assert len(sources) == 2
        assert sources[0] in baseline_ids and sources[1] in final_ids
        assert all(s in found for s in sources)  # both sources exist on the GP side
        assert obs["subject"]["identifier"] == {"system": NHS_SYSTEM, "value": accepted.nhs}
        assert obs["effectivePeriod"] == {"start": "2026-12-01T10:00:00Z", "end": "2027-03-01T10:00:00Z"}
    assert len(found) == 3 + 3 + len(derived)
    # derived Observations are found by date like the others (the end of their period)
    assert ids(derived) <= ids(gp_search(client, token_for, date="2027-03-01"))


def test_completed_referral_completes_the_service_request_and_everything_tells_the_whole_story(
    client, token_for, vcse, accepted
) -> None:
    assert vcse.outcomes(accepted.referral_id, BASELINE).status_code == 201

    done = vcse.set_status(accepted.referral_id, "completed")

    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    sr = client.get(f"/fhir/ServiceRequest/{accepted.service_request_id}", headers=token_for("demo-gp"))
    assert sr.json()["status"] == "completed"
    everything = client.get(
        f"/fhir/ServiceRequest/{accepted.service_request_id}/$everything", headers=token_for("demo-gp")
    )
    assert everything.status_code == 200, everything.text
    types = [e["resource"]["resourceType"] for e in everything.json()["entry"]]
    assert {"ServiceRequest", "Patient", "Task", "Observation", "Consent"} <= set(types)
    assert types.count("Observation") == 3
    task = next(e["resource"] for e in everything.json()["entry"] if e["resource"]["resourceType"] == "Task")
    assert task["status"] == "completed"
    consent = next(e["resource"] for e in everything.json()["entry"] if e["resource"]["resourceType"] == "Consent")
    assert consent["patient"]["reference"] == f"Patient/{accepted.patient_id}"


def test_outcomes_can_still_be_recorded_after_completion_but_not_after_decline(client, token_for, vcse) -> None:
    kept = refer(client, token_for, vcse, "9990001006", "OUT-DONE")
    assert vcse.set_status(kept.referral_id, "accepted").status_code == 200
    assert vcse.set_status(kept.referral_id, "completed").status_code == 200
    declined = refer(client, token_for, vcse, "9990001014", "OUT-DECLINED")
    refused = vcse.call(
        "POST", f"/vcse/v1/referrals/{declined.referral_id}/status", {"status": "declined", "reason": "No capacity"}
    )
    assert refused.status_code == 200, refused.text

    assert vcse.outcomes(kept.referral_id, FINAL).status_code == 201
    assert vcse.outcomes(declined.referral_id, BASELINE).status_code == 409


# -- information governance -------------------------------------------------------------------


def test_vcse_requests_and_answers_never_carry_the_nhs_number(client, token_for, vcse, accepted) -> None:
    vcse.call("GET", "/vcse/v1/referrals")
    vcse.call("GET", f"/vcse/v1/referrals/{accepted.referral_id}")
    assert vcse.outcomes(accepted.referral_id, BASELINE).status_code == 201
    assert vcse.outcomes(accepted.referral_id, BASELINE).status_code == 200
    bad = copy.deepcopy(FINAL)
    bad["ons4"]["anxiety"] = 11
    assert vcse.outcomes(accepted.referral_id, bad).status_code == 422
    assert vcse.outcomes(accepted.referral_id, FINAL).status_code == 201
    assert vcse.set_status(accepted.referral_id, "completed").status_code == 200

    assert len(vcse.exchanges) >= 9
    for request, answer in vcse.exchanges:
        assert accepted.nhs not in request
        assert accepted.nhs not in answer, answer
    # ... while the GP side does see it, on the very Observations the VCSE caused
    gp_view = observations_of(client, token_for, accepted)
    assert gp_view and all(o["subject"]["identifier"]["value"] == accepted.nhs for o in gp_view)


def test_final_recorded_before_the_baseline_is_422_naming_recorded_at(client, token_for, vcse, accepted) -> None:
    assert vcse.outcomes(accepted.referral_id, BASELINE).status_code == 201
    early = {**FINAL, "recorded_at": "2026-11-30T09:00:00Z"}

    response = vcse.outcomes(accepted.referral_id, early)

    assert response.status_code == 422, response.text
    assert expressions(response.json()) == ["recorded_at"]
    assert len(observations_of(client, token_for, accepted)) == 3
