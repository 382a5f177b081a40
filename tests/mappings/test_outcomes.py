"""A VCSE outcome submission mapped to R4 Observations: codes, values, shared fields, determinism."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.observation import Observation

from mappings.outcome_codes import (
    LOCAL_MEASURES,
    MEASURES,
    SWEMWBS_METRIC,
    all_codings,
    swemwbs_metric,
)
from mappings.outcome_schema import OutcomeSubmission, parse_submission
from mappings.outcomes import observation_id, submission_to_observations
from profiles.systems import LOINC, OBSERVATION_CATEGORY, SNOMED, UCUM

NOW = datetime(2026, 12, 2, tzinfo=UTC)
PATIENT = {
    "reference": "Patient/9f1c",
    "identifier": {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9912003888"},
}
HOST = {"reference": "Organization/vcse-7", "display": "Good Neighbours Trust"}
SR = "ServiceRequest/abc"
FULL: dict[str, Any] = {
    "submission_id": "sub-001",
    "recorded_at": "2026-12-01T10:00:00Z",
    "stage": "baseline",
    "ons4": {"life_satisfaction": 6, "worthwhile": 7, "happiness": 5, "anxiety": 4},
    "swemwbs": {"items": [3, 3, 4, 2, 3, 3, 4]},
    "pam": {"level": 2, "score": 51.0},
    "activities": [
        {"activity": "Walking group", "provider": "Age UK Lincoln", "date": "2026-11-20", "attended": True},
        {"activity": "Debt advice", "provider": None, "date": "2026-11-24", "attended": False},
    ],
    "closing_summary": {"reason": "declined-by-patient", "note": "Would rather wait until spring."},
}


def submission(data: dict[str, Any] = FULL) -> OutcomeSubmission:
    return parse_submission(data)


def mapped(sub: OutcomeSubmission | None = None, prefix: str = "sub-001") -> list[dict[str, Any]]:
    return submission_to_observations(
        sub or submission(), patient_ref=PATIENT, service_request_ref=SR, performer=HOST, id_prefix=prefix
    )


def by_id(obs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["id"]: o for o in obs}


def codes(concept: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in concept["coding"]]


def component(obs: dict[str, Any], code: str) -> dict[str, Any]:
    [found] = [c for c in obs["component"] if c["code"]["coding"][0]["code"] == code]
    return found


def score(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "ScoreOf", "system": UCUM, "code": "{ScoreOf}"}


def test_the_full_submission_maps_to_one_observation_per_measure_activity_and_summary() -> None:
    assert [o["id"] for o in mapped()] == [
        "sub-001-ons4",
        "sub-001-swemwbs",
        "sub-001-pam",
        "sub-001-activity-1",
        "sub-001-activity-2",
        "sub-001-closing-summary",
    ]


def test_every_observation_validates_as_an_r4_observation() -> None:
    for obs in mapped():
        parsed = Observation.model_validate(obs)
        assert parsed.id == obs["id"]
        # Round trip: what fhir.resources writes back is what we produced (nothing dropped).
        assert orjson.loads(parsed.model_dump_json(exclude_none=True)) == orjson.loads(orjson.dumps(obs))


@pytest.mark.parametrize("reason", ["completed", "unable-to-contact", "moved-away", "referred-elsewhere", "other"])
def test_each_closing_reason_validates_and_is_coded_locally(reason: str) -> None:
    sub = submission({**FULL, "closing_summary": {"reason": reason}})
    obs = by_id(mapped(sub))["sub-001-closing-summary"]
    Observation.model_validate(obs)
    assert codes(obs["valueCodeableConcept"]) == [(LOCAL_MEASURES, f"closing-{reason}")]
    assert "note" not in obs


def test_shared_fields_follow_the_uk_core_pattern() -> None:
    for obs in mapped():
        assert obs["status"] == "final"
        assert obs["meta"] == {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation"]}
        assert obs["subject"] == PATIENT
        assert obs["basedOn"] == [{"reference": SR}]
        assert obs["performer"] == [HOST]
        assert obs["issued"] == "2026-12-01T10:00:00Z"
        measure = obs["id"].removeprefix("sub-001-")
        assert obs["identifier"] == [
            {"system": "https://sp-gateway.dev/fhir/Id/outcome-submission", "value": f"sub-001/{measure}"}
        ]


def test_instruments_are_surveys_and_activities_and_closing_are_social_history() -> None:
    categories = {o["id"]: o["category"][0]["coding"][0] for o in mapped()}
    assert {c["system"] for c in categories.values()} == {OBSERVATION_CATEGORY}
    assert [categories[f"sub-001-{m}"]["code"] for m in ("ons4", "swemwbs", "pam")] == ["survey"] * 3
    social = ("activity-1", "activity-2", "closing-summary")
    assert [categories[f"sub-001-{m}"]["code"] for m in social] == ["social-history"] * 3


def test_ons4_is_one_panel_with_four_scored_components() -> None:
    obs = by_id(mapped())["sub-001-ons4"]
    assert codes(obs["code"]) == [(LOCAL_MEASURES, "ons4")]
    assert obs["effectiveDateTime"] == "2026-12-01T10:00:00Z"
    assert "valueQuantity" not in obs
    assert [(codes(c["code"])[0][1], c["valueQuantity"]) for c in obs["component"]] == [
        ("ons4-life-satisfaction", score(6)),
        ("ons4-worthwhile", score(7)),
        ("ons4-happiness", score(5)),
        ("ons4-anxiety", score(4)),
    ]
    assert component(obs, "ons4-anxiety")["code"]["text"] == "Overall, how anxious did you feel yesterday?"


def test_swemwbs_carries_the_raw_total_as_value_and_the_unconfirmed_snomed_code_second() -> None:
    obs = by_id(mapped())["sub-001-swemwbs"]
    assert codes(obs["code"]) == [(LOCAL_MEASURES, "swemwbs-total"), (SNOMED, "718466001")]
    assert obs["valueQuantity"] == score(22)


def test_swemwbs_metric_component_uses_the_published_conversion_table() -> None:
    obs = by_id(mapped())["sub-001-swemwbs"]
    assert component(obs, "swemwbs-metric")["valueQuantity"] == score(19.98)  # raw 22 -> 19.98


def test_swemwbs_items_are_seven_components_in_instrument_order() -> None:
    obs = by_id(mapped())["sub-001-swemwbs"]
    items = [c for c in obs["component"] if c["code"]["coding"][0]["code"].startswith("swemwbs-item")]
    assert [c["code"]["coding"][0]["code"] for c in items] == [f"swemwbs-item{n}" for n in range(1, 8)]
    assert [c["valueQuantity"]["value"] for c in items] == [3, 3, 4, 2, 3, 3, 4]
    assert items[0]["code"]["text"] == "SWEMWBS item 1: I've been feeling optimistic about the future"


@pytest.mark.parametrize(("raw", "metric"), [(7, 7.00), (8, 9.51), (21, 19.25), (34, 32.55), (35, 35.00)])
def test_swemwbs_metric_conversion_matches_table_entries(raw: int, metric: float) -> None:
    assert swemwbs_metric(raw) == metric


def test_swemwbs_metric_table_covers_every_raw_total_and_rises_with_it() -> None:
    assert sorted(SWEMWBS_METRIC) == list(range(7, 36))
    values = [SWEMWBS_METRIC[raw] for raw in range(7, 36)]
    assert values == sorted(values) and len(set(values)) == len(values)
    with pytest.raises(ValueError, match="7-35"):
        swemwbs_metric(36)


def test_pam_is_one_observation_with_level_and_score_components() -> None:
    obs = by_id(mapped())["sub-001-pam"]
    assert codes(obs["code"]) == [(LOCAL_MEASURES, "pam")]
    assert component(obs, "pam-level")["valueQuantity"] == {
        "value": 2,
        "unit": "level",
        "system": UCUM,
        "code": "{level}",
    }
    assert component(obs, "pam-score")["valueQuantity"] == score(51.0)


def test_an_activity_records_attendance_as_a_boolean_on_the_activity_date() -> None:
    found = by_id(mapped())
    walk, debt = found["sub-001-activity-1"], found["sub-001-activity-2"]
    assert codes(walk["code"]) == [(LOCAL_MEASURES, "sp-activity-attendance")]
    assert walk["code"]["text"] == "Attendance at social prescribing activity: Walking group"
    assert (walk["valueBoolean"], walk["effectiveDateTime"]) == (True, "2026-11-20")
    assert component(walk, "sp-activity-name")["valueString"] == "Walking group"
    assert component(walk, "sp-activity-provider")["valueString"] == "Age UK Lincoln"
    assert debt["valueBoolean"] is False
    assert [c["code"]["coding"][0]["code"] for c in debt["component"]] == ["sp-activity-name"]


def test_declined_by_patient_is_coded_with_the_nhs_england_snomed_situation() -> None:
    obs = by_id(mapped())["sub-001-closing-summary"]
    assert codes(obs["code"]) == [(LOCAL_MEASURES, "sp-closing-summary")]
    value = obs["valueCodeableConcept"]
    assert value["coding"][0] == {
        "system": SNOMED,
        "code": "871711000000103",
        "display": "Social prescribing declined",
    }
    assert codes(value)[1] == (LOCAL_MEASURES, "closing-declined-by-patient")
    assert obs["note"] == [{"text": "Would rather wait until spring."}]


def test_only_the_measures_present_are_mapped() -> None:
    sub = submission(
        {
            "submission_id": "s-2",
            "recorded_at": "2026-12-01T10:00:00+01:00",
            "stage": "review",
            "pam": {"level": 3, "score": 60.2},
        }
    )
    [obs] = mapped(sub, prefix="s-2")
    assert obs["id"] == "s-2-pam"
    assert obs["effectiveDateTime"] == "2026-12-01T09:00:00Z"  # normalised to UTC


def test_a_retried_submission_maps_to_identical_resources() -> None:
    first = mapped(submission(copy.deepcopy(FULL)))
    again = mapped(submission(copy.deepcopy(FULL)))
    assert orjson.dumps(first) == orjson.dumps(again)
    assert len({o["id"] for o in first}) == len(first)


def test_output_does_not_alias_the_callers_references() -> None:
    obs = mapped()
    obs[0]["subject"]["identifier"]["value"] = "changed"
    obs[0]["performer"][0]["display"] = "changed"
    assert PATIENT["identifier"]["value"] == "9912003888" and HOST["display"] == "Good Neighbours Trust"


@pytest.mark.parametrize("prefix", ["has space", "x" * 60, "under_score"])
def test_an_id_prefix_that_cannot_make_a_fhir_id_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="not a FHIR id"):
        observation_id(prefix, "closing-summary")


def test_the_code_table_holds_no_snomed_or_loinc_code_beyond_those_we_can_cite() -> None:
    national = {(c.system, c.code, c.status) for _, c in all_codings() if c.system in {SNOMED, LOINC}}
    assert national == {
        (SNOMED, "718466001", "unconfirmed"),
        (SNOMED, "871711000000103", "confirmed"),
        (SNOMED, "871731000000106", "confirmed"),
    }
    assert all(c.status == "local" for _, c in all_codings() if c.system == LOCAL_MEASURES)
    assert all(c.source for _, c in all_codings()) and all(m.source for m in MEASURES.values())


def test_docs_codes_md_lists_every_coding_in_the_table() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "codes.md").read_text(encoding="utf-8")
    rows = {
        tuple(cell.strip(" `") for cell in line.split("|")[2:4]) for line in doc.splitlines() if line.startswith("|")
    }
    for key, coding in all_codings():
        assert (coding.system, coding.code) in rows, f"{key}: {coding.code} missing from docs/codes.md"
