"""The outcomes form becomes the API's submission, and the API parser's issues become NHS.UK
error-summary entries naming the question."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.inbox.outcome_form import errors_for, to_submission
from mappings.outcome_schema import parse_submission
from profiles.outcomes import FhirError

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def test_a_full_form_is_a_valid_submission() -> None:
    form = {
        "submission_id": "console-1",
        "stage": "final",
        **{f"ons4-{n}": "5" for n in ("life_satisfaction", "worthwhile", "happiness", "anxiety")},
        **{f"swemwbs-{i}": "4" for i in range(1, 8)},
        "pam-level": "3",
        "pam-score": "61.5",
        "activity-activity": "Walking group",
        "activity-date": "2026-11-28",
        "activity-attended": "yes",
        "closing-reason": "completed",
        "closing-note": "Enjoyed the group",
    }
    sub = parse_submission(to_submission(form, NOW))
    assert sub.swemwbs is not None and sub.swemwbs.items == [4] * 7
    assert sub.pam is not None and (sub.pam.level, sub.pam.score) == (3, 61.5)
    assert sub.activities is not None and sub.activities[0].attended is True
    assert sub.closing_summary is not None and sub.closing_summary.reason == "completed"


def _errors(form: dict[str, str]) -> dict[str, str]:
    with pytest.raises(FhirError) as caught:
        parse_submission(to_submission({"submission_id": "console-2", **form}, NOW))
    return {e.field: e.message for e in errors_for(caught.value.issues)}


def test_blank_and_wrong_answers_are_named_by_their_question() -> None:
    errors = _errors({"ons4-happiness": "12", "ons4-anxiety": "3.5", "swemwbs-2": "4", "pam-score": "x"})
    assert errors["stage"] == "Select which assessment this is"
    assert errors["ons4-happiness"] == "Happiness yesterday must be between 0 and 10; got 12"
    assert errors["ons4-anxiety"].startswith("Anxiety yesterday must be a whole number")
    assert errors["ons4-life_satisfaction"] == "Enter an answer from 0 to 10 for “life satisfaction”"
    assert errors["swemwbs-1"].startswith("Select an answer for statement 1")
    assert errors["pam-level"] == "Select the PAM level"
    assert errors["pam-score"].startswith("PAM score must be a number")


def test_an_empty_form_asks_for_at_least_one_set_of_answers() -> None:
    errors = _errors({"stage": "baseline"})
    assert list(errors) == ["ons4-life_satisfaction"]
    assert errors["ons4-life_satisfaction"].startswith("Enter at least one set of answers: ONS4, SWEMWBS, PAM")
