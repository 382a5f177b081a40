"""What a VCSE outcome submission is, and how a bad one is refused.

A VCSE host POSTs one submission per assessment point (baseline, review, final) for a referral:
wellbeing scores (ONS4, SWEMWBS, PAM), activities attended, and, at the end, a closing summary.
The field groups follow the PRSB Social Prescribing Information Standard's "Message back to GP
and referrer" (outcomes, support offered); docs/outcomes.md explains each field.

Scores are strict: `"5"` is refused, not coerced, because a CRM that sends text has a bug we
should surface rather than guess around. `parse_submission` turns every pydantic error into one
OperationOutcome issue whose `expression` is the JSON path of the field (`swemwbs.items[3]`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from profiles.outcomes import FhirError, Issue

SUBMISSION_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


def _between(low: float, high: float) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        # `not (a <= v <= b)` also catches NaN, which compares false with everything.
        if not (low <= value <= high):
            raise PydanticCustomError(
                "out_of_range", "must be between {low} and {high}", {"low": f"{low:g}", "high": f"{high:g}"}
            )
        return value

    return check


def _bounded_int(low: int, high: int) -> Any:
    return Annotated[
        StrictInt,
        AfterValidator(_between(low, high)),
        Field(json_schema_extra={"minimum": low, "maximum": high}),
    ]


def _bounded_float(low: float, high: float) -> Any:
    return Annotated[
        StrictFloat,
        AfterValidator(_between(low, high)),
        Field(json_schema_extra={"minimum": low, "maximum": high}),
    ]


def _text_only(kind: str) -> Callable[[Any], Any]:
    # pydantic's lax date/datetime parsing accepts Unix timestamps (numbers); a CRM sending one
    # has most likely sent the wrong field, so only ISO 8601 text (or a parsed value) passes.
    def check(value: Any) -> Any:
        if isinstance(value, str | date):
            return value
        raise PydanticCustomError("iso_text", "must be an ISO 8601 {kind} written as text", {"kind": kind})

    return check


Ons4Score = _bounded_int(0, 10)
SwemwbsItem = _bounded_int(1, 5)
PamLevel = _bounded_int(1, 4)
PamScore = _bounded_float(0.0, 100.0)
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_text_only("date-time"))]
IsoDate = Annotated[date, BeforeValidator(_text_only("date"))]


class _Model(BaseModel):
    # Unknown fields are refused: a misspelt "anxeity" must not silently drop a score.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ons4(_Model):
    """ONS personal well-being, four questions answered 0-10 (ONS4)."""

    life_satisfaction: Ons4Score
    worthwhile: Ons4Score
    happiness: Ons4Score
    anxiety: Ons4Score  # higher is worse


class Swemwbs(_Model):
    """Short Warwick-Edinburgh Mental Well-being Scale: seven items answered 1-5."""

    items: Annotated[list[SwemwbsItem], Field(min_length=7, max_length=7)]
    total: StrictInt | None = None

    @field_validator("total")
    @classmethod
    def _total_is_sum(cls, total: int | None, info: ValidationInfo) -> int | None:
        items = info.data.get("items")
        if total is not None and items is not None and total != sum(items):
            raise PydanticCustomError(
                "total_mismatch",
                "must equal the sum of the seven items ({expected})",
                {"expected": sum(items)},
            )
        return total

    @property
    def raw_total(self) -> int:
        return sum(self.items)


class Pam(_Model):
    """Patient Activation Measure: level 1-4 and score on its 0-100 scale."""

    level: PamLevel
    score: PamScore


class Activity(_Model):
    """One activity the person was referred to ("support offered" in the PRSB standard)."""

    activity: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    provider: Annotated[StrictStr, Field(min_length=1, max_length=200)] | None = None
    date: IsoDate
    attended: StrictBool


ClosingReason = Literal[
    "completed", "declined-by-patient", "unable-to-contact", "moved-away", "referred-elsewhere", "other"
]


class ClosingSummary(_Model):
    """Why the social prescribing episode ended."""

    reason: ClosingReason
    note: Annotated[StrictStr, Field(min_length=1, max_length=2000)] | None = None


class OutcomeSubmission(_Model):
    """One outcome submission from a VCSE host about one referral."""

    submission_id: Annotated[StrictStr, Field(pattern=SUBMISSION_ID_PATTERN)]
    recorded_at: IsoDateTime
    stage: Literal["baseline", "review", "final"]
    ons4: Ons4 | None = None
    swemwbs: Swemwbs | None = None
    pam: Pam | None = None
    activities: Annotated[list[Activity], Field(min_length=1)] | None = None
    closing_summary: ClosingSummary | None = None

    @model_validator(mode="after")
    def _has_content(self) -> OutcomeSubmission:
        if not any((self.ons4, self.swemwbs, self.pam, self.activities, self.closing_summary)):
            raise PydanticCustomError(
                "empty_submission",
                "a submission must carry at least one of ons4, swemwbs, pam, activities or closing_summary",
            )
        return self


def parse_submission(data: Any) -> OutcomeSubmission:
    """Returns the validated submission, or raises FhirError(422) with one issue per error.

    `data` is decoded JSON (a dict) or raw JSON bytes/str. `recorded_at` is taken as the CRM
    states it, future dates included: a CRM's clock is its own, and the value is what the GP
    record shows as the Observation's effective time.
    """
    try:
        if isinstance(data, bytes | str):
            try:
                data = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise FhirError(400, [Issue("structure", f"the body is not valid JSON: {exc}")]) from None
        return OutcomeSubmission.model_validate(data)
    except ValidationError as exc:
        raise FhirError(422, [_issue(e) for e in exc.errors(include_url=False)]) from None


def submission_json_schema() -> dict[str, Any]:
    """Returns the JSON Schema (draft 2020-12) of an outcome submission."""
    return OutcomeSubmission.model_json_schema()


def json_path(loc: tuple[int | str, ...]) -> str:
    """Returns `a.b[3].c` for a pydantic error location."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _issue(error: Any) -> Issue:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    path = json_path(loc)
    # Name a field by its own name ("life_satisfaction"); a list entry by its path ("swemwbs.items[3]").
    name = loc[-1] if loc and isinstance(loc[-1], str) else (path or "the submission")
    code, text = _describe(error, str(name))
    return Issue(code, text, path or None)


def _got(value: Any) -> str:
    # repr for text and numbers (NaN stays visible); JSON for objects and arrays.
    simple = isinstance(value, str | int | float) and not isinstance(value, bool)
    shown = repr(value) if simple else orjson.dumps(value, default=str).decode()
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _describe(error: Any, name: str) -> tuple[str, str]:
    """Returns (IssueType code, plain-English diagnostics) for one pydantic error."""
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    got = _got(error.get("input"))
    if kind == "missing":
        return "required", f"{name} is required"
    if kind == "extra_forbidden":
        return "structure", f"{name} is not a field of an outcome submission (check the spelling)"
    if kind == "out_of_range":
        return "value", f"{name} must be between {ctx['low']} and {ctx['high']}; got {got}"
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return "value", f"{name} must be a whole number, not text or a decimal; got {got}"
    if kind in {"float_type", "float_parsing", "finite_number"}:
        return "value", f"{name} must be a number, not text; got {got}"
    if kind in {"bool_type", "bool_parsing"}:
        return "value", f"{name} must be true or false; got {got}"
    if kind == "string_type":
        return "value", f"{name} must be text; got {got}"
    if kind == "string_pattern_mismatch":
        return "value", f"{name} must be 1-64 characters of letters, digits, '.', '_' or '-'; got {got}"
    if kind == "string_too_short":
        return "value", f"{name} must not be empty"
    if kind == "string_too_long":
        return "value", f"{name} must be at most {ctx['max_length']} characters"
    if kind == "literal_error":
        return "code-invalid", f"{name} must be one of {ctx['expected']}; got {got}"
    if kind == "timezone_aware":
        return "value", f"{name} must include a time zone (e.g. 'Z' or '+01:00'); got {got}"
    if kind in {"too_short", "too_long"}:
        return "value", _length_text(name, ctx, error.get("input"))
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return "structure", f"{name} must be a JSON object; got {got}"
    if kind == "list_type":
        return "structure", f"{name} must be a JSON array; got {got}"
    if kind == "empty_submission":
        return "required", error["msg"][0].upper() + error["msg"][1:]
    if kind.startswith(("datetime", "date", "iso_text")):
        what = "an ISO 8601 date-time with a time zone" if name == "recorded_at" else "a date (YYYY-MM-DD)"
        return "value", f"{name} must be {what}; got {got}"
    return "value", f"{name} {error['msg']}; got {got}"


def _length_text(name: str, ctx: dict[str, Any], value: Any) -> str:
    count = len(value) if isinstance(value, list) else ctx.get("actual_length")
    low, high = ctx.get("min_length"), ctx.get("max_length")
    if name == "items":
        return f"swemwbs.items must have exactly 7 answers; got {count}"
    if low is not None:
        return f"{name} must have at least {low} entries; got {count}"
    return f"{name} must have at most {high} entries; got {count}"
