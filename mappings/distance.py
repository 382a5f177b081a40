"""Distance travelled: how each wellbeing measure changed between two submissions (pure).

Commissioners ask for "people with a demonstrable wellbeing improvement" (docs/design.md). For every
measure present in both submissions we report the change and whether it crosses a published
meaningful-change threshold; where we found no published threshold, `meaningful` is None and the
derived Observation carries no interpretation. Thresholds and their sources: docs/outcomes.md.

A change becomes a derived Observation: `derivedFrom` both source Observations, `effectivePeriod`
from the earlier to the later assessment, and an interpretation from v3-ObservationInterpretation
(`U`/`D` for the direction and `B`/`W` for better/worse, which its change value set allows
together) when the change is meaningful, or our local `no-meaningful-change` when it is not.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mappings.outcome_codes import (
    INTERPRETATION,
    MEASURES,
    OUTCOME_SUBMISSION_ID,
    UKCORE_OBSERVATION,
    category,
    swemwbs_metric,
)
from mappings.outcome_schema import OutcomeSubmission
from mappings.outcomes import fhir_instant, observation_id, submission_identifier

Direction = Literal["better", "worse", "none"]


@dataclass(frozen=True)
class Rule:
    """How to read a change in one measure."""

    measure: str
    source_measure: str  # the Observation the values come from: "swemwbs", "ons4" or "pam"
    higher_is_better: bool
    threshold: float | None  # smallest absolute change that counts as meaningful; None: none published
    source: str


_SHAH_2018 = (
    "Shah N, Cader M, Andrews B et al. Responsiveness of the Short Warwick Edinburgh Mental Well-Being "
    "Scale (SWEMWBS): evaluation a clinical sample. Health Qual Life Outcomes 2018;16:239: at individual "
    "level a change of between 1 and 3 points (1 SEM = 1.03, 2.77 SEM = 2.87) is statistically important; "
    "we take the stricter standard, rounded up to 3, on the metric score"
)
_ONS_NONE = (
    "No individual meaningful-change threshold found: ONS personal well-being guidance gives reporting "
    "bands for levels, not a threshold for one person's change"
)
_PAM_SCORE = (
    "NQF/CBE #2483 'Gains in Patient Activation Measure (PAM) Scores at 12 Months' (steward Insignia "
    "Health): a 3-point change on the 0-100 scale"
)
_PAM_LEVEL = "A move between PAM activation levels 1-4 (Insignia Health level bands); sp-gateway rule"

RULES: tuple[Rule, ...] = (
    Rule("swemwbs.metric", "swemwbs", True, 3.0, _SHAH_2018),
    Rule("ons4.life_satisfaction", "ons4", True, None, _ONS_NONE),
    Rule("ons4.worthwhile", "ons4", True, None, _ONS_NONE),
    Rule("ons4.happiness", "ons4", True, None, _ONS_NONE),
    Rule("ons4.anxiety", "ons4", False, None, _ONS_NONE),  # ONS4 anxiety: higher is worse
    Rule("pam.score", "pam", True, 3.0, _PAM_SCORE),
    Rule("pam.level", "pam", True, 1.0, _PAM_LEVEL),
)


@dataclass(frozen=True)
class Change:
    """The change in one measure between two submissions."""

    measure: str
    source_measure: str
    baseline: float
    final: float
    delta: float  # final - baseline, rounded to 2 decimals (metric scores have 2)
    direction: Direction
    meaningful: bool | None
    threshold: float | None
    threshold_source: str
    baseline_submission_id: str
    final_submission_id: str
    baseline_at: datetime
    final_at: datetime


def measure_values(sub: OutcomeSubmission) -> dict[str, float]:
    """Returns the comparable value of every measure present in a submission."""
    values: dict[str, float] = {}
    if sub.swemwbs is not None:
        values["swemwbs.metric"] = swemwbs_metric(sub.swemwbs.raw_total)
    if sub.ons4 is not None:
        for name in ("life_satisfaction", "worthwhile", "happiness", "anxiety"):
            values[f"ons4.{name}"] = getattr(sub.ons4, name)
    if sub.pam is not None:
        values["pam.score"] = sub.pam.score
        values["pam.level"] = sub.pam.level
    return values


def distance_travelled(baseline: OutcomeSubmission, final: OutcomeSubmission) -> list[Change]:
    """Returns one Change per measure present in both submissions, in RULES order."""
    if final.recorded_at < baseline.recorded_at:
        raise ValueError("the final submission was recorded before the baseline submission")
    before, after = measure_values(baseline), measure_values(final)
    return [
        _change(rule, before[rule.measure], after[rule.measure], baseline, final)
        for rule in RULES
        if rule.measure in before and rule.measure in after
    ]


def _change(rule: Rule, was: float, now: float, baseline: OutcomeSubmission, final: OutcomeSubmission) -> Change:
    delta = round(now - was, 2)
    direction: Direction = "none" if delta == 0 else ("better" if (delta > 0) == rule.higher_is_better else "worse")
    meaningful = None if rule.threshold is None else abs(delta) >= rule.threshold
    return Change(
        rule.measure,
        rule.source_measure,
        was,
        now,
        delta,
        direction,
        meaningful,
        rule.threshold,
        rule.source,
        baseline.submission_id,
        final.submission_id,
        baseline.recorded_at,
        final.recorded_at,
    )


def change_to_observation(
    change: Change,
    *,
    baseline_ref: str,
    final_ref: str,
    patient_ref: dict[str, Any],
    service_request_ref: str,
    performer: dict[str, Any],
    id_prefix: str,
    referral_id: str | None = None,
) -> dict[str, Any]:
    """Returns the derived R4 Observation for one change (identifier unique per referral, as in
    mappings.outcomes.submission_to_observations).

    `baseline_ref` and `final_ref` reference the source Observations (e.g. "Observation/sub-1-swemwbs");
    `id_prefix` is the later submission's prefix, so a recomputation maps to the same id.
    """
    measure = MEASURES[f"change.{change.measure}"]
    slug = measure.codings[0].code  # "change-swemwbs-metric"
    stem = submission_identifier(referral_id, change.final_submission_id)
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": observation_id(id_prefix, slug),
        "meta": {"profile": [UKCORE_OBSERVATION]},
        "identifier": [{"system": OUTCOME_SUBMISSION_ID, "value": f"{stem}/{slug}"}],
        "basedOn": [{"reference": service_request_ref}],
        "status": "final",
        "category": [category("survey")],
        "code": measure.concept(),
        "subject": deepcopy(patient_ref),
        "effectivePeriod": {"start": fhir_instant(change.baseline_at), "end": fhir_instant(change.final_at)},
        "issued": fhir_instant(change.final_at),
        "performer": [deepcopy(performer)],
        "valueQuantity": measure.quantity(change.delta),
        "note": [{"text": _note(change)}],
        "derivedFrom": [{"reference": baseline_ref}, {"reference": final_ref}],
    }
    interpretation = _interpretation(change)
    if interpretation:
        obs["interpretation"] = interpretation
    return obs


def _interpretation(change: Change) -> list[dict[str, Any]]:
    if change.meaningful is None:
        return []
    if not change.meaningful:
        return [_concept("no-meaningful-change")]
    up_down = "U" if change.delta > 0 else "D"
    better_worse = "B" if change.direction == "better" else "W"
    return [_concept(up_down), _concept(better_worse)]


def _concept(key: str) -> dict[str, Any]:
    coding = INTERPRETATION[key]
    return {"coding": [coding.to_fhir()], "text": coding.display}


def _note(change: Change) -> str:
    head = (
        f"{MEASURES[change.measure].text}: {change.baseline:g} to {change.final:g} "
        f"(change {change.delta:+g}, {change.direction if change.direction != 'none' else 'no change'})."
    )
    if change.threshold is None:
        return f"{head} Not interpreted. {change.threshold_source}."
    verdict = "meets" if change.meaningful else "is below"
    # The source text is long; the threshold and verdict come first so a GP reads them at a glance.
    rule = f"the meaningful-change threshold of {change.threshold:g}"
    return f"{head} The change {verdict} {rule}: {change.threshold_source}."
