"""The outcome submission schema: what is accepted, and how each refusal names its field."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings.outcome_schema import (
    OutcomeSubmission,
    json_path,
    parse_submission,
    submission_json_schema,
)
from profiles.outcomes import FhirError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BRIEF_EXAMPLE: dict[str, Any] = {
    "submission_id": "sub-001",
    "recorded_at": "2026-12-01T10:00:00Z",
    "stage": "baseline",
    "ons4": {"life_satisfaction": 6, "worthwhile": 7, "happiness": 5, "anxiety": 4},
    "swemwbs": {"items": [3, 3, 4, 2, 3, 3, 4]},
    "pam": {"level": 2, "score": 51.0},
}


def example(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BRIEF_EXAMPLE)
    data.update(changes)
    return data


def refusal(data: Any) -> FhirError:
    with pytest.raises(FhirError) as caught:
        parse_submission(data)
    return caught.value


def issues(data: Any) -> list[tuple[str | None, str]]:
    error = refusal(data)
    assert error.status == 422
    return [(i.expression, i.diagnostics) for i in error.issues]


def test_the_brief_example_is_accepted_with_typed_values() -> None:
    sub = parse_submission(BRIEF_EXAMPLE)
    assert sub.ons4 is not None and sub.ons4.life_satisfaction == 6
    assert sub.swemwbs is not None and sub.swemwbs.raw_total == 22
    assert sub.pam is not None and sub.pam.score == 51.0
    assert sub.recorded_at == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_raw_json_bytes_are_accepted_like_decoded_json() -> None:
    assert parse_submission(orjson.dumps(BRIEF_EXAMPLE)) == parse_submission(BRIEF_EXAMPLE)


def test_malformed_json_is_a_400_not_a_422() -> None:
    assert refusal(b'{"submission_id": ').status == 400


def test_an_ons4_score_of_11_names_the_field_in_plain_english() -> None:
    bad = example(ons4={"life_satisfaction": 11, "worthwhile": 7, "happiness": 5, "anxiety": 4})
    assert issues(bad) == [("ons4.life_satisfaction", "life_satisfaction must be between 0 and 10; got 11")]


def test_a_missing_swemwbs_item_names_the_items_list() -> None:
    assert issues(example(swemwbs={"items": [3, 3, 4, 2, 3, 3]})) == [
        ("swemwbs.items", "swemwbs.items must have exactly 7 answers; got 6")
    ]


def test_an_out_of_range_swemwbs_item_is_named_by_its_index() -> None:
    assert issues(example(swemwbs={"items": [3, 3, 4, 6, 3, 3, 4]})) == [
        ("swemwbs.items[3]", "swemwbs.items[3] must be between 1 and 5; got 6")
    ]


@pytest.mark.parametrize(
    ("changes", "expression"),
    [
        (
            {"ons4": {"life_satisfaction": "5", "worthwhile": 7, "happiness": 5, "anxiety": 4}},
            "ons4.life_satisfaction",
        ),
        ({"swemwbs": {"items": [3, 3, 4, "2", 3, 3, 4]}}, "swemwbs.items[3]"),
        ({"pam": {"level": "2", "score": 51.0}}, "pam.level"),
        ({"pam": {"level": 2, "score": "51.0"}}, "pam.score"),
        (
            {"ons4": {"life_satisfaction": 5.0, "worthwhile": 7, "happiness": 5, "anxiety": 4}},
            "ons4.life_satisfaction",
        ),
        (
            {"ons4": {"life_satisfaction": True, "worthwhile": 7, "happiness": 5, "anxiety": 4}},
            "ons4.life_satisfaction",
        ),
    ],
)
def test_a_score_of_the_wrong_type_is_refused_not_coerced(changes: dict[str, Any], expression: str) -> None:
    [(where, text)] = issues(example(**changes))
    assert where == expression
    assert "must be a" in text and "got" in text


def test_an_unknown_field_is_refused_with_its_path() -> None:
    bad = example(ons4={"life_satisfaction": 6, "worthwhile": 7, "happiness": 5, "anxiety": 4, "anxeity": 3})
    assert issues(bad) == [("ons4.anxeity", "anxeity is not a field of an outcome submission (check the spelling)")]


def test_a_naive_recorded_at_is_refused() -> None:
    assert issues(example(recorded_at="2026-12-01T10:00:00")) == [
        (
            "recorded_at",
            "recorded_at must include a time zone (e.g. 'Z' or '+01:00'); got '2026-12-01T10:00:00'",
        )
    ]


def test_a_unix_timestamp_is_not_taken_for_a_date_time() -> None:
    [(where, text)] = issues(example(recorded_at=1764583200))
    assert where == "recorded_at" and "ISO 8601" in text


def test_every_error_becomes_its_own_issue() -> None:
    bad = example(
        submission_id="has space",
        stage="middle",
        ons4={"life_satisfaction": 11, "worthwhile": -1, "happiness": 5},
        pam={"level": 5, "score": 101.0},
    )
    assert sorted(where for where, _ in issues(bad)) == [
        "ons4.anxiety",
        "ons4.life_satisfaction",
        "ons4.worthwhile",
        "pam.level",
        "pam.score",
        "stage",
        "submission_id",
    ]


def test_a_missing_ons4_answer_is_reported_as_required() -> None:
    error = refusal(example(ons4={"life_satisfaction": 6, "worthwhile": 7, "happiness": 5}))
    [issue] = error.issues
    assert (issue.code, issue.expression, issue.diagnostics) == (
        "required",
        "ons4.anxiety",
        "anxiety is required",
    )


def test_swemwbs_total_must_equal_the_sum_of_items() -> None:
    assert issues(example(swemwbs={"items": [3, 3, 4, 2, 3, 3, 4], "total": 23})) == [
        ("swemwbs.total", "total must equal the sum of the seven items (22); got 23")
    ]
    assert parse_submission(example(swemwbs={"items": [3, 3, 4, 2, 3, 3, 4], "total": 22})).swemwbs


@pytest.mark.parametrize("score", [-0.5, 100.5, float("nan"), float("inf")])
def test_a_pam_score_outside_0_to_100_is_refused(score: float) -> None:
    [(where, text)] = issues(example(pam={"level": 2, "score": score}))
    assert where == "pam.score" and text.startswith("score must be between 0 and 100; got")


@pytest.mark.parametrize("level", [0, 5])
def test_a_pam_level_outside_1_to_4_is_refused(level: int) -> None:
    assert issues(example(pam={"level": level, "score": 50.0})) == [
        ("pam.level", f"level must be between 1 and 4; got {level}")
    ]


@pytest.mark.parametrize("stage", ["baseline", "review", "final"])
def test_each_stage_is_accepted(stage: str) -> None:
    assert parse_submission(example(stage=stage)).stage == stage


@pytest.mark.parametrize("good", ["a", "sub-001", "A.b_c-9", "x" * 64])
def test_a_well_formed_submission_id_is_accepted(good: str) -> None:
    assert parse_submission(example(submission_id=good)).submission_id == good


@pytest.mark.parametrize("bad", ["", "x" * 65, "has space", "slash/id", "é"])
def test_a_malformed_submission_id_is_refused(bad: str) -> None:
    [(where, _)] = issues(example(submission_id=bad))
    assert where == "submission_id"


def test_a_future_recorded_at_is_taken_as_the_crm_states_it() -> None:
    ahead = (NOW + timedelta(days=8)).isoformat()
    assert parse_submission(example(recorded_at=ahead)).recorded_at > NOW


def test_a_submission_with_nothing_to_record_is_refused() -> None:
    bare = {"submission_id": "s1", "recorded_at": "2026-12-01T10:00:00Z", "stage": "review"}
    [issue] = refusal(bare).issues
    assert issue.code == "required" and issue.expression is None
    assert "at least one of ons4, swemwbs, pam, activities or closing_summary" in issue.diagnostics


def test_activities_alone_or_a_closing_summary_alone_is_enough() -> None:
    base = {"submission_id": "s1", "recorded_at": "2026-12-01T10:00:00Z", "stage": "final"}
    walk = {"activity": "Walking group", "provider": None, "date": "2026-11-20", "attended": True}
    assert parse_submission({**base, "activities": [walk]}).activities
    assert parse_submission({**base, "closing_summary": {"reason": "moved-away"}}).closing_summary


def test_activity_and_closing_summary_errors_name_nested_paths() -> None:
    bad = {
        "submission_id": "s1",
        "recorded_at": "2026-12-01T10:00:00Z",
        "stage": "final",
        "activities": [{"activity": "Walk", "date": "2026-13-01", "attended": "yes"}],
        "closing_summary": {"reason": "bored"},
    }
    found = dict(issues(bad))
    assert set(found) == {"activities[0].date", "activities[0].attended", "closing_summary.reason"}
    assert found["activities[0].attended"] == "attended must be true or false; got 'yes'"
    assert "'declined-by-patient'" in found["closing_summary.reason"]


def test_an_empty_activities_list_is_refused() -> None:
    [(where, _)] = issues(example(activities=[]))
    assert where == "activities"


def test_the_422_outcome_carries_the_bars_code_and_fhirpath() -> None:
    outcome = refusal(example(stage="middle")).outcome()
    [issue] = outcome["issue"]
    assert issue["details"]["coding"][0]["code"] == "REC_UNPROCESSABLE_ENTITY"
    assert issue["expression"] == ["stage"]


def test_json_path_writes_list_indexes_in_brackets() -> None:
    assert json_path(("activities", 0, "date")) == "activities[0].date"
    assert json_path(("swemwbs", "items", 3)) == "swemwbs.items[3]"


def test_the_json_schema_states_ranges_and_forbids_unknown_fields() -> None:
    schema = submission_json_schema()
    defs = schema["$defs"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"submission_id", "recorded_at", "stage"}
    life = defs["Ons4"]["properties"]["life_satisfaction"]
    assert (life["type"], life["minimum"], life["maximum"]) == ("integer", 0, 10)
    items = defs["Swemwbs"]["properties"]["items"]
    assert (items["minItems"], items["maxItems"], items["items"]["maximum"]) == (7, 7, 5)
    assert defs["Pam"]["properties"]["score"]["maximum"] == 100.0
    assert defs["ClosingSummary"]["properties"]["reason"]["enum"][1] == "declined-by-patient"


@given(st.integers(min_value=-50, max_value=60))
def test_an_ons4_answer_is_accepted_exactly_when_it_is_0_to_10(value: int) -> None:
    data = example(ons4={"life_satisfaction": 6, "worthwhile": 7, "happiness": value, "anxiety": 4})
    if 0 <= value <= 10:
        sub: OutcomeSubmission = parse_submission(data)
        assert sub.ons4 is not None and sub.ons4.happiness == value
    else:
        assert issues(data) == [("ons4.happiness", f"happiness must be between 0 and 10; got {value}")]
