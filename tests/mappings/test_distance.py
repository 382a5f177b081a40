"""Distance travelled: per-measure change, meaningful-change thresholds, derived Observations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from mappings.distance import RULES, Change, change_to_observation, distance_travelled
from mappings.outcome_codes import LOCAL_MEASURES, V3_OBSERVATION_INTERPRETATION
from mappings.outcome_schema import OutcomeSubmission, parse_submission

NOW = datetime(2027, 6, 1, tzinfo=UTC)
ONS4 = {"life_satisfaction": 6, "worthwhile": 7, "happiness": 5, "anxiety": 4}


def sub(sid: str, when: str, **measures: Any) -> OutcomeSubmission:
    stage = "baseline" if sid.startswith("b") else "final"
    return parse_submission({"submission_id": sid, "recorded_at": when, "stage": stage, **measures})


def baseline(**measures: Any) -> OutcomeSubmission:
    return sub("b-1", "2026-12-01T10:00:00Z", **measures)


def final(**measures: Any) -> OutcomeSubmission:
    return sub("f-1", "2027-03-01T10:00:00Z", **measures)


def only(changes: list[Change], measure: str) -> Change:
    [found] = [c for c in changes if c.measure == measure]
    return found


def derived(change: Change) -> dict[str, Any]:
    return change_to_observation(
        change,
        baseline_ref=f"Observation/b-1-{change.source_measure}",
        final_ref=f"Observation/f-1-{change.source_measure}",
        patient_ref={"reference": "Patient/p-1"},
        service_request_ref="ServiceRequest/sr-1",
        performer={"reference": "Organization/vcse-7"},
        id_prefix="f-1",
    )


def interpretation(obs: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i["coding"][0]["system"], i["coding"][0]["code"]) for i in obs.get("interpretation", [])]


def test_a_swemwbs_rise_of_at_least_3_metric_points_is_a_meaningful_improvement() -> None:
    # raw 22 -> 26: metric 19.98 -> 23.21
    change = only(
        distance_travelled(
            baseline(swemwbs={"items": [3, 3, 4, 2, 3, 3, 4]}),
            final(swemwbs={"items": [4, 4, 4, 3, 4, 3, 4]}),
        ),
        "swemwbs.metric",
    )
    assert (change.baseline, change.final, change.delta) == (19.98, 23.21, 3.23)
    assert (change.direction, change.meaningful, change.threshold) == ("better", True, 3.0)
    obs = derived(change)
    assert interpretation(obs) == [(V3_OBSERVATION_INTERPRETATION, "U"), (V3_OBSERVATION_INTERPRETATION, "B")]
    assert obs["valueQuantity"]["value"] == 3.23


def test_a_small_swemwbs_rise_is_reported_but_not_meaningful() -> None:
    # raw 22 -> 24: metric 19.98 -> 21.54 (+1.56)
    change = only(
        distance_travelled(
            baseline(swemwbs={"items": [3, 3, 4, 2, 3, 3, 4]}),
            final(swemwbs={"items": [3, 3, 4, 3, 4, 3, 4]}),
        ),
        "swemwbs.metric",
    )
    assert (change.delta, change.direction, change.meaningful) == (1.56, "better", False)
    assert interpretation(derived(change)) == [(LOCAL_MEASURES, "no-meaningful-change")]


def test_a_swemwbs_fall_of_at_least_3_metric_points_is_a_meaningful_deterioration() -> None:
    # raw 28 -> 21: metric 25.03 -> 19.25
    change = only(
        distance_travelled(baseline(swemwbs={"items": [4] * 7}), final(swemwbs={"items": [3] * 7})),
        "swemwbs.metric",
    )
    assert (change.delta, change.direction, change.meaningful) == (-5.78, "worse", True)
    assert interpretation(derived(change)) == [
        (V3_OBSERVATION_INTERPRETATION, "D"),
        (V3_OBSERVATION_INTERPRETATION, "W"),
    ]


def test_ons4_changes_are_reported_without_a_threshold_and_anxiety_falling_is_better() -> None:
    changes = distance_travelled(
        baseline(ons4=ONS4),
        final(ons4={"life_satisfaction": 8, "worthwhile": 7, "happiness": 4, "anxiety": 1}),
    )
    summary = {c.measure: (c.delta, c.direction, c.meaningful) for c in changes}
    assert summary == {
        "ons4.life_satisfaction": (2, "better", None),
        "ons4.worthwhile": (0, "none", None),
        "ons4.happiness": (-1, "worse", None),
        "ons4.anxiety": (-3, "better", None),
    }


def test_a_change_without_a_published_threshold_carries_no_interpretation() -> None:
    change = only(
        distance_travelled(baseline(ons4=ONS4), final(ons4={**ONS4, "anxiety": 0})),
        "ons4.anxiety",
    )
    obs = derived(change)
    assert "interpretation" not in obs
    assert "Not interpreted" in obs["note"][0]["text"]


def test_a_pam_level_change_is_meaningful_and_a_2_point_score_change_is_not() -> None:
    changes = distance_travelled(baseline(pam={"level": 2, "score": 51.0}), final(pam={"level": 3, "score": 53.0}))
    level, points = only(changes, "pam.level"), only(changes, "pam.score")
    assert (level.delta, level.direction, level.meaningful) == (1, "better", True)
    assert (points.delta, points.meaningful, points.threshold) == (2.0, False, 3.0)
    assert "2483" in points.threshold_source


def test_a_3_point_pam_score_fall_within_a_level_is_a_meaningful_deterioration() -> None:
    change = only(
        distance_travelled(baseline(pam={"level": 3, "score": 60.0}), final(pam={"level": 3, "score": 57.0})),
        "pam.score",
    )
    assert (change.delta, change.direction, change.meaningful) == (-3.0, "worse", True)


def test_only_measures_present_in_both_submissions_are_compared() -> None:
    changes = distance_travelled(
        baseline(ons4=ONS4, pam={"level": 2, "score": 51.0}),
        final(swemwbs={"items": [3] * 7}, pam={"level": 2, "score": 51.0}),
    )
    assert [c.measure for c in changes] == ["pam.score", "pam.level"]
    assert all(c.direction == "none" and c.meaningful is False for c in changes)


def test_a_final_recorded_before_the_baseline_is_refused() -> None:
    early = sub("f-0", "2026-11-01T10:00:00Z", ons4=ONS4)
    with pytest.raises(ValueError, match="before the baseline"):
        distance_travelled(baseline(ons4=ONS4), early)


def test_every_derived_observation_validates_and_points_at_both_sources() -> None:
    changes = distance_travelled(
        baseline(ons4=ONS4, swemwbs={"items": [3] * 7}, pam={"level": 2, "score": 51.0}),
        final(ons4={**ONS4, "happiness": 9}, swemwbs={"items": [5] * 7}, pam={"level": 4, "score": 80.5}),
    )
    assert [c.measure for c in changes] == [r.measure for r in RULES]
    for change in changes:
        obs = derived(change)
        Observation.model_validate(obs)
        assert obs["derivedFrom"] == [
            {"reference": f"Observation/b-1-{change.source_measure}"},
            {"reference": f"Observation/f-1-{change.source_measure}"},
        ]
        assert obs["effectivePeriod"] == {"start": "2026-12-01T10:00:00Z", "end": "2027-03-01T10:00:00Z"}
        assert obs["status"] == "final" and obs["basedOn"] == [{"reference": "ServiceRequest/sr-1"}]


def test_a_recomputed_change_maps_to_the_same_id_and_identifier() -> None:
    def once() -> dict[str, Any]:
        changes = distance_travelled(baseline(pam={"level": 2, "score": 51.0}), final(pam={"level": 3, "score": 58.0}))
        return derived(only(changes, "pam.score"))

    first, again = once(), once()
    assert first == again
    assert first["id"] == "f-1-change-pam-score"
    assert first["identifier"][0]["value"] == "f-1/change-pam-score"
