"""A VCSE outcome submission as FHIR R4 Observations for the GP record (pure: no I/O, no clock).

One submission becomes, in this order:

    ons4            survey          panel, four components (0-10)
    swemwbs         survey          valueQuantity = raw total; components = metric score, items 1-7
    pam             survey          components = level, score
    activity-<n>    social-history  valueBoolean = attended; components = activity name, provider
    closing-summary social-history  valueCodeableConcept = reason (SNOMED for declined-by-patient)

Each follows the UK Core scored-instrument pattern (NPEWS example: category survey, coded score,
UCUM {ScoreOf}) and carries `meta.profile` UKCore-Observation. Ids and identifiers are derived
from the submission, so a retried submission maps to the same resources byte for byte.
"""

from __future__ import annotations

import re
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any

from mappings.outcome_codes import (
    MEASURES,
    OUTCOME_SUBMISSION_ID,
    UKCORE_OBSERVATION,
    category,
    swemwbs_metric,
)
from mappings.outcome_schema import Activity, ClosingSummary, Ons4, OutcomeSubmission, Pam, Swemwbs

# FHIR R4 id datatype: [A-Za-z0-9\-\.]{1,64}.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

Resource = dict[str, Any]


def fhir_instant(moment: datetime) -> str:
    """Returns an R4 instant/dateTime in UTC with a `Z`, e.g. `2026-12-01T10:00:00Z`."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def observation_id(id_prefix: str, measure: str) -> str:
    """Returns the deterministic Observation.id for one measure of a submission."""
    value = f"{id_prefix}-{measure}"
    if not _FHIR_ID.fullmatch(value):
        raise ValueError(f"Observation id {value!r} is not a FHIR id ([A-Za-z0-9-.], at most 64 characters)")
    return value


def submission_identifier(referral_id: str | None, submission_id: str) -> str:
    """Returns the stem of a submission's Observation identifiers: unique across referrals."""
    return f"{referral_id}/{submission_id}" if referral_id else submission_id


def submission_to_observations(
    sub: OutcomeSubmission,
    *,
    patient_ref: dict[str, Any],
    service_request_ref: str,
    performer: dict[str, Any],
    id_prefix: str,
    referral_id: str | None = None,
) -> list[Resource]:
    """Returns the R4 Observations (dicts) for every measure, activity and closing summary present.

    Identifiers are `<referral_id>/<submission_id>/<measure>` when `referral_id` is given: a submission
    id is an idempotency key per referral only, so two referrals may both send `crm-0001`."""
    frame = _Frame(sub, patient_ref, service_request_ref, performer, id_prefix, referral_id)
    out: list[Resource] = []
    if sub.ons4 is not None:
        out.append(_ons4(frame, sub.ons4))
    if sub.swemwbs is not None:
        out.append(_swemwbs(frame, sub.swemwbs))
    if sub.pam is not None:
        out.append(_pam(frame, sub.pam))
    for n, activity in enumerate(sub.activities or [], start=1):
        out.append(_activity(frame, activity, n))
    if sub.closing_summary is not None:
        out.append(_closing(frame, sub.closing_summary))
    return out


class _Frame:
    """What every Observation of one submission shares."""

    def __init__(
        self,
        sub: OutcomeSubmission,
        patient_ref: dict[str, Any],
        service_request_ref: str,
        performer: dict[str, Any],
        id_prefix: str,
        referral_id: str | None = None,
    ) -> None:
        self.sub = sub
        self.identifier_base = submission_identifier(referral_id, sub.submission_id)
        self.patient_ref = patient_ref
        self.service_request_ref = service_request_ref
        self.performer = performer
        self.id_prefix = id_prefix
        self.recorded = fhir_instant(sub.recorded_at)

    def observation(self, measure: str, code_key: str, *, effective: str | None = None) -> Resource:
        concept = MEASURES[code_key]
        return {
            "resourceType": "Observation",
            "id": observation_id(self.id_prefix, measure),
            "meta": {"profile": [UKCORE_OBSERVATION]},
            "identifier": [{"system": OUTCOME_SUBMISSION_ID, "value": f"{self.identifier_base}/{measure}"}],
            "basedOn": [{"reference": self.service_request_ref}],
            "status": "final",
            "category": [category(concept.category)],
            "code": concept.concept(),
            "subject": deepcopy(self.patient_ref),
            "effectiveDateTime": effective or self.recorded,
            # issued = recorded_at, not the gateway's clock: a retry must map to identical resources.
            "issued": self.recorded,
            "performer": [deepcopy(self.performer)],
        }


def _score_component(key: str, value: float) -> Resource:
    measure = MEASURES[key]
    return {"code": measure.concept(), "valueQuantity": measure.quantity(value)}


def _ons4(frame: _Frame, ons4: Ons4) -> Resource:
    obs = frame.observation("ons4", "ons4")
    obs["component"] = [
        _score_component(f"ons4.{name}", getattr(ons4, name))
        for name in ("life_satisfaction", "worthwhile", "happiness", "anxiety")
    ]
    return obs


def _swemwbs(frame: _Frame, swemwbs: Swemwbs) -> Resource:
    obs = frame.observation("swemwbs", "swemwbs")
    raw = swemwbs.raw_total
    obs["valueQuantity"] = MEASURES["swemwbs"].quantity(raw)
    obs["component"] = [_score_component("swemwbs.metric", swemwbs_metric(raw))] + [
        _score_component(f"swemwbs.item{n}", value) for n, value in enumerate(swemwbs.items, start=1)
    ]
    return obs


def _pam(frame: _Frame, pam: Pam) -> Resource:
    obs = frame.observation("pam", "pam")
    obs["component"] = [_score_component("pam.level", pam.level), _score_component("pam.score", pam.score)]
    return obs


def _activity(frame: _Frame, activity: Activity, n: int) -> Resource:
    # The activity's own date is when the attendance happened; recorded_at stays in `issued`.
    obs = frame.observation(f"activity-{n}", "activity", effective=activity.date.isoformat())
    obs["code"] = MEASURES["activity"].concept(f"Attendance at social prescribing activity: {activity.activity}")
    obs["valueBoolean"] = activity.attended
    obs["component"] = [{"code": MEASURES["activity.name"].concept(), "valueString": activity.activity}]
    if activity.provider is not None:
        obs["component"].append({"code": MEASURES["activity.provider"].concept(), "valueString": activity.provider})
    return obs


def _closing(frame: _Frame, summary: ClosingSummary) -> Resource:
    obs = frame.observation("closing-summary", "closing")
    obs["valueCodeableConcept"] = MEASURES[f"closing.{summary.reason}"].concept()
    if summary.note is not None:
        obs["note"] = [{"text": summary.note}]
    return obs
