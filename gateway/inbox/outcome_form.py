"""The outcomes form: its questions, turning a posted form into an outcome submission for the API's
own parser (mappings.outcome_schema), and that parser's issues into NHS.UK error-summary entries.

Nothing is validated here that the API would not validate: the form only converts text to numbers
where the text is a number, and leaves everything else for `parse_submission` to refuse, so the
inbox and a CRM are held to exactly the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

from mappings.outcome_schema import ClosingReason
from profiles.outcomes import Issue

# ONS personal well-being questions (ONS, "Personal well-being user guidance"), answered 0-10.
ONS4 = (
    ("life_satisfaction", "Overall, how satisfied are you with your life nowadays?", "Life satisfaction"),
    (
        "worthwhile",
        "Overall, to what extent do you feel that the things you do in your life are worthwhile?",
        "Feeling things are worthwhile",
    ),
    ("happiness", "Overall, how happy did you feel yesterday?", "Happiness yesterday"),
    ("anxiety", "Overall, how anxious did you feel yesterday?", "Anxiety yesterday"),
)
# SWEMWBS statements (© NHS Health Scotland, University of Warwick and University of Edinburgh),
# answered for "the last 2 weeks" on a 1-5 scale.
SWEMWBS = (
    "I've been feeling optimistic about the future",
    "I've been feeling useful",
    "I've been feeling relaxed",
    "I've been dealing with problems well",
    "I've been thinking clearly",
    "I've been feeling close to other people",
    "I've been able to make up my own mind about things",
)
SWEMWBS_ANSWERS = ("None of the time", "Rarely", "Some of the time", "Often", "All of the time")
PAM_LEVELS = (
    (1, "Level 1: may not yet believe their own role is important"),
    (2, "Level 2: lacks the confidence and knowledge to take action"),
    (3, "Level 3: beginning to take action"),
    (4, "Level 4: has made most of the necessary changes"),
)
STAGES = (("baseline", "First assessment (baseline)"), ("review", "Review"), ("final", "Final assessment"))
CLOSING_REASONS: tuple[tuple[str, str], ...] = tuple(
    (code, code.replace("-", " ").capitalize()) for code in get_args(ClosingReason)
)
_INTEGER = re.compile(r"^\s*-?[0-9]+\s*$")
_DECIMAL = re.compile(r"^\s*-?[0-9]+(\.[0-9]+)?\s*$")


@dataclass(frozen=True)
class FieldError:
    field: str  # the form control's id (the error summary links to it)
    message: str


def _text(form: dict[str, str], name: str) -> str:
    return (form.get(name) or "").strip()


def _number(value: str, *, decimal: bool = False) -> Any:
    """A number when the text is one; otherwise the text itself, for the parser to refuse in words."""
    if _INTEGER.match(value):
        return int(value)
    if decimal and _DECIMAL.match(value):
        return float(value)
    return value


def to_submission(form: dict[str, str], recorded_at: datetime) -> dict[str, Any]:
    """Returns the outcome submission the form describes (a group is left out when all its fields are blank)."""
    data: dict[str, Any] = {
        "submission_id": _text(form, "submission_id"),
        "recorded_at": recorded_at.isoformat(timespec="seconds"),
        "stage": _text(form, "stage") or None,
    }
    if data["stage"] is None:
        del data["stage"]
    ons4 = {name: _number(_text(form, f"ons4-{name}")) for name, _, _ in ONS4 if _text(form, f"ons4-{name}")}
    if ons4:
        data["ons4"] = ons4
    answers = [_text(form, f"swemwbs-{i}") for i in range(1, 8)]
    if any(answers):
        data["swemwbs"] = {"items": [_number(a) if a else None for a in answers]}
    level, score = _text(form, "pam-level"), _text(form, "pam-score")
    if level or score:
        pam: dict[str, Any] = {}
        if level:
            pam["level"] = _number(level)
        if score:
            pam["score"] = float(score) if _DECIMAL.match(score) else score
        data["pam"] = pam
    activity = {k: _text(form, f"activity-{k}") for k in ("activity", "provider", "date", "attended")}
    if any(activity.values()):
        entry: dict[str, Any] = {k: v for k, v in activity.items() if v and k != "attended"}
        if activity["attended"]:
            entry["attended"] = {"yes": True, "no": False}.get(activity["attended"], activity["attended"])
        data["activities"] = [entry]
    reason, note = _text(form, "closing-reason"), _text(form, "closing-note")
    if reason or note:
        data["closing_summary"] = {k: v for k, v in (("reason", reason), ("note", note)) if v}
    return data


# The parser's JSON path -> (form control id, what to call the field, what to say when it was left blank).
_FIELDS: dict[str, tuple[str, str, str]] = {
    "stage": ("stage", "Assessment point", "Select which assessment this is"),
    **{
        f"ons4.{name}": (f"ons4-{name}", short, f"Enter an answer from 0 to 10 for “{short.lower()}”")
        for name, _, short in ONS4
    },
    **{
        f"swemwbs.items[{i}]": (
            f"swemwbs-{i + 1}",
            f"Statement {i + 1} (“{text}”)",
            f"Select an answer for statement {i + 1} (“{text}”)",
        )
        for i, text in enumerate(SWEMWBS)
    },
    "pam.level": ("pam-level", "PAM level", "Select the PAM level"),
    "pam.score": ("pam-score", "PAM score", "Enter the PAM score from 0 to 100"),
    "activities[0].activity": ("activity-activity", "Activity", "Enter the name of the activity"),
    "activities[0].provider": ("activity-provider", "Provider", "Enter who provided the activity"),
    "activities[0].date": ("activity-date", "Activity date", "Enter the date of the activity"),
    "activities[0].attended": ("activity-attended", "Attended", "Select whether the person attended"),
    "closing_summary.reason": ("closing-reason", "Reason for closing", "Select why the support ended"),
    "closing_summary.note": ("closing-note", "Closing summary", "Enter the closing summary"),
}
_BLANK = re.compile(r"is required|got None|got null|must not be empty")


def errors_for(issues: list[Issue]) -> list[FieldError]:
    """Returns the parser's issues as error-summary entries: the field's own words, linked to its control."""
    out: list[FieldError] = []
    for issue in issues:
        path = issue.expression or ""
        if path not in _FIELDS:
            if path in ("", "submission_id", "recorded_at"):
                text = issue.diagnostics
                if "at least one of" in text:
                    text = "Enter at least one set of answers: ONS4, SWEMWBS, PAM, an activity or a closing summary"
                out.append(FieldError("ons4-life_satisfaction" if "at least one" in text else "", text))
            else:
                out.append(FieldError("", issue.diagnostics))
            continue
        field_id, label, blank = _FIELDS[path]
        if _BLANK.search(issue.diagnostics):
            out.append(FieldError(field_id, blank))
            continue
        # "anxiety must be between 0 and 10; got 11" -> "Anxiety yesterday must be between 0 and 10; got 11"
        _, _, rest = issue.diagnostics.partition(" ")
        out.append(FieldError(field_id, f"{label} {rest}"))
    return out
