"""The one table of codes, units and value ranges for VCSE outcome Observations.

Every concept the outcome mapping writes is a `Measure` here; every coding it carries is a
`Coding` with its status (`confirmed`, `unconfirmed` or `local`) and the source that backs it.
docs/codes.md is this table in prose: change one, change the other.

Rules (docs/design.md, "Codes and identifiers we know"): never invent a SNOMED CT or LOINC code. A
concept with no code we could confirm gets a code in our own CodeSystem, `LOCAL_MEASURES`.

The module also holds the SWEMWBS raw-to-metric conversion table: it is reference data about
the instrument, like its ranges, and both the mapping and distance travelled read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from profiles.systems import LOCAL_BASE, OBSERVATION_CATEGORY, SNOMED, SP_DECLINED, SP_REFERRAL, UCUM

LOCAL_MEASURES = f"{LOCAL_BASE}/CodeSystem/sp-outcome-measures"
OUTCOME_SUBMISSION_ID = f"{LOCAL_BASE}/Id/outcome-submission"
V3_OBSERVATION_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
UKCORE_OBSERVATION = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Observation"

Status = Literal["confirmed", "unconfirmed", "local"]
Category = Literal["survey", "social-history"]

_LOCAL_SOURCE = "sp-gateway local code: no national code found (docs/codes.md)"
_NHSE_SP = "NHS England, social prescribing SNOMED CT codes (docs/design.md)"
# docs/design.md lists 718466001 as "seen ... confirm before relying on it". We found it again in a
# public copy of NHS Digital's MHSDS assessment-tool reference table (same display, range 7-35,
# SNOMED "v2"), but not in a SNOMED CT browser: it stays unconfirmed and rides as a second coding.
_SWEMWBS_SNOMED_SOURCE = (
    "NHS Digital MHSDS assessment-tool reference table (public copy; display and range 7-35 match); "
    "not checked in a SNOMED CT UK Edition browser"
)
_STEWART_BROWN = (
    "Stewart-Brown S et al. Health Qual Life Outcomes 2009;7:15 (SWEMWBS items); "
    "Warwick Medical School WEMWBS 'Guidance on Scoring'"
)
_ONS4_SOURCE = "ONS personal well-being user guide; GSS personal well-being harmonised standard (0-10)"
_PRSB = (
    "sp-gateway outcome schema; grouped after the PRSB Social Prescribing Information Standard v1.1 "
    "'Message back to GP and referrer'"
)
_PAM_SOURCE = "Insignia Health PAM: 0-100 score, levels 1-4 (NQF/CBE #2483 measure description)"


@dataclass(frozen=True)
class Coding:
    """One FHIR Coding plus where it comes from and how sure we are of it."""

    system: str
    code: str
    display: str
    status: Status
    source: str

    def to_fhir(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True)
class Measure:
    """A concept the mapping writes: an Observation.code, a component code or a coded value."""

    key: str
    codings: tuple[Coding, ...]
    text: str
    category: Category
    source: str  # where the concept, its wording and its range come from
    unit: str | None = None  # UCUM code, e.g. "{ScoreOf}"
    unit_display: str | None = None
    low: float | None = None
    high: float | None = None

    def concept(self, text: str | None = None) -> dict[str, object]:
        """Returns the FHIR CodeableConcept for this measure (codings in table order)."""
        return {"coding": [c.to_fhir() for c in self.codings], "text": text or self.text}

    def quantity(self, value: float) -> dict[str, object]:
        """Returns a FHIR Quantity in this measure's UCUM unit."""
        if self.unit is None:
            raise ValueError(f"{self.key} has no unit")
        return {"value": value, "unit": self.unit_display or self.unit, "system": UCUM, "code": self.unit}


def _local(code: str, display: str) -> Coding:
    return Coding(LOCAL_MEASURES, code, display, "local", _LOCAL_SOURCE)


def _slug(key: str) -> str:
    # "ons4.life_satisfaction" -> "ons4-life-satisfaction"; the total is "swemwbs-total", not "swemwbs".
    return {"swemwbs": "swemwbs-total"}.get(key, key.replace(".", "-").replace("_", "-"))


# UK Core's NPEWS example writes scores as UCUM {ScoreOf} with unit "ScoreOf" (UKCore-Observation).
SCORE_UNIT = ("{ScoreOf}", "ScoreOf")
LEVEL_UNIT = ("{level}", "level")


def _score(
    key: str, display: str, text: str, source: str, low: float, high: float, extra: tuple[Coding, ...] = ()
) -> Measure:
    return Measure(
        key,
        (_local(_slug(key), display), *extra),
        text,
        "survey",
        source,
        SCORE_UNIT[0],
        SCORE_UNIT[1],
        low,
        high,
    )


ONS4_QUESTIONS: dict[str, str] = {
    "life_satisfaction": "Overall, how satisfied are you with your life nowadays?",
    "worthwhile": "Overall, to what extent do you feel that the things you do in your life are worthwhile?",
    "happiness": "Overall, how happy did you feel yesterday?",
    "anxiety": "Overall, how anxious did you feel yesterday?",
}

# The seven SWEMWBS statements, in instrument order (Stewart-Brown et al. 2009).
SWEMWBS_ITEMS: tuple[str, ...] = (
    "I've been feeling optimistic about the future",
    "I've been feeling useful",
    "I've been feeling relaxed",
    "I've been dealing with problems well",
    "I've been thinking clearly",
    "I've been feeling close to other people",
    "I've been able to make up my own mind about things",
)

CLOSING_REASONS: dict[str, str] = {
    "completed": "Social prescribing support completed",
    "declined-by-patient": "Declined by patient",
    "unable-to-contact": "Unable to contact patient",
    "moved-away": "Patient moved away",
    "referred-elsewhere": "Referred to another service",
    "other": "Other reason",
}

_SP_DECLINED = Coding(SNOMED, SP_DECLINED, "Social prescribing declined", "confirmed", _NHSE_SP)
_SWEMWBS_SNOMED = Coding(
    SNOMED,
    "718466001",
    "Short Warwick-Edinburgh Mental Well-being Scale score",
    "unconfirmed",
    _SWEMWBS_SNOMED_SOURCE,
)


def _instruments() -> list[Measure]:
    rows = [
        Measure(
            "ons4",
            (_local("ons4", "ONS4 personal well-being (panel)"),),
            "ONS4 personal well-being",
            "survey",
            _ONS4_SOURCE,
        )
    ]
    for name, question in ONS4_QUESTIONS.items():
        label = name.replace("_", " ")
        rows.append(_score(f"ons4.{name}", f"ONS4 {label} score", question, _ONS4_SOURCE, 0, 10))
    rows.append(
        _score(
            "swemwbs",
            "SWEMWBS total raw score",
            "Short Warwick-Edinburgh Mental Well-being Scale (SWEMWBS) total raw score",
            _STEWART_BROWN,
            7,
            35,
            extra=(_SWEMWBS_SNOMED,),
        )
    )
    rows.append(
        _score(
            "swemwbs.metric",
            "SWEMWBS metric score (Rasch-transformed)",
            "SWEMWBS metric score (Rasch-transformed)",
            _STEWART_BROWN,
            7.0,
            35.0,
        )
    )
    for n, statement in enumerate(SWEMWBS_ITEMS, start=1):
        rows.append(
            _score(
                f"swemwbs.item{n}",
                f"SWEMWBS item {n} score",
                f"SWEMWBS item {n}: {statement}",
                _STEWART_BROWN,
                1,
                5,
            )
        )
    rows.append(
        Measure(
            "pam",
            (_local("pam", "Patient Activation Measure (PAM) assessment"),),
            "Patient Activation Measure (PAM)",
            "survey",
            _PAM_SOURCE,
        )
    )
    rows.append(
        Measure(
            "pam.level",
            (_local("pam-level", "PAM activation level"),),
            "PAM activation level (1-4)",
            "survey",
            _PAM_SOURCE,
            LEVEL_UNIT[0],
            LEVEL_UNIT[1],
            1,
            4,
        )
    )
    rows.append(_score("pam.score", "PAM activation score", "PAM activation score (0-100)", _PAM_SOURCE, 0.0, 100.0))
    return rows


def _episode() -> list[Measure]:
    rows = [
        Measure(
            "activity",
            (_local("sp-activity-attendance", "Attendance at social prescribing activity"),),
            "Attendance at social prescribing activity",
            "social-history",
            _PRSB,
        ),
        Measure(
            "activity.name",
            (_local("sp-activity-name", "Social prescribing activity name"),),
            "Activity",
            "social-history",
            _PRSB,
        ),
        Measure(
            "activity.provider",
            (_local("sp-activity-provider", "Social prescribing activity provider"),),
            "Provider",
            "social-history",
            _PRSB,
        ),
        Measure(
            "closing",
            (_local("sp-closing-summary", "Social prescribing episode closing summary"),),
            "Social prescribing closing summary",
            "social-history",
            _PRSB,
        ),
    ]
    for reason, display in CLOSING_REASONS.items():
        # The declined situation is the national code GP systems must hold (PCN contract);
        # our local reason code rides beside it as the same meaning in our own system.
        national = (_SP_DECLINED,) if reason == "declined-by-patient" else ()
        rows.append(
            Measure(
                f"closing.{reason}",
                (*national, _local(f"closing-{reason}", display)),
                display,
                "social-history",
                _NHSE_SP if national else _PRSB,
            )
        )
    # Not written by the outcome mapping: the referral procedure belongs on ServiceRequest.code.
    # Listed so that every social prescribing code lives in this one table.
    rows.append(
        Measure(
            "referral",
            (Coding(SNOMED, SP_REFERRAL, "Referral to social prescribing service", "confirmed", _NHSE_SP),),
            "Referral to social prescribing service",
            "social-history",
            _NHSE_SP,
        )
    )
    return rows


def _changes() -> list[Measure]:
    """Distance travelled: the derived change Observations of mappings/distance.py."""
    specs = [("swemwbs.metric", "SWEMWBS metric score", SCORE_UNIT)]
    specs += [(f"ons4.{n}", f"ONS4 {n.replace('_', ' ')} score", SCORE_UNIT) for n in ONS4_QUESTIONS]
    specs += [
        ("pam.score", "PAM activation score", SCORE_UNIT),
        ("pam.level", "PAM activation level", LEVEL_UNIT),
    ]
    return [
        Measure(
            f"change.{key}",
            (_local(f"change-{_slug(key)}", f"Change in {label}"),),
            f"Change in {label}",
            "survey",
            "sp-gateway distance travelled (docs/outcomes.md)",
            unit[0],
            unit[1],
        )
        for key, label, unit in specs
    ]


_MEASURES: list[Measure] = [*_instruments(), *_episode(), *_changes()]
MEASURES: dict[str, Measure] = {m.key: m for m in _MEASURES}

# R4 observation-category (http://terminology.hl7.org/CodeSystem/observation-category).
CATEGORY_DISPLAY: dict[str, str] = {"survey": "Survey", "social-history": "Social History"}

# v3-ObservationInterpretation change codes (THO ValueSet v3-ObservationInterpretationChange:
# "At most one of B or W and one of U or D allowed").
_THO = "HL7 Terminology (THO) v3-ObservationInterpretation, ValueSet v3-ObservationInterpretationChange"
INTERPRETATION: dict[str, Coding] = {
    "B": Coding(V3_OBSERVATION_INTERPRETATION, "B", "Better", "confirmed", _THO),
    "W": Coding(V3_OBSERVATION_INTERPRETATION, "W", "Worse", "confirmed", _THO),
    "U": Coding(V3_OBSERVATION_INTERPRETATION, "U", "Significant change up", "confirmed", _THO),
    "D": Coding(V3_OBSERVATION_INTERPRETATION, "D", "Significant change down", "confirmed", _THO),
    # v3 has no "changed, but not meaningfully" code (its change codes all mean a significant change).
    "no-meaningful-change": _local("no-meaningful-change", "Change below the meaningful-change threshold"),
}


def category(name: Category) -> dict[str, object]:
    """Returns the Observation.category CodeableConcept for `survey` or `social-history`."""
    return {"coding": [{"system": OBSERVATION_CATEGORY, "code": name, "display": CATEGORY_DISPLAY[name]}]}


def all_codings() -> list[tuple[str, Coding]]:
    """Returns every (measure key, coding) pair in table order, for docs and checks."""
    rows = [(m.key, c) for m in _MEASURES for c in m.codings]
    rows += [(f"interpretation.{k}", c) for k, c in INTERPRETATION.items()]
    return rows


# SWEMWBS raw total (7-35) to metric score: the conversion table published with the scale
# (Stewart-Brown et al. 2009, HQLO 7:15; Warwick Medical School "Guidance on Scoring" says raw
# totals must be transformed "according to a conversion table"). Values as reproduced identically
# by two independent public implementations we could read; see docs/outcomes.md.
SWEMWBS_METRIC: dict[int, float] = dict(
    zip(
        range(7, 36),
        (
            7.00,
            9.51,
            11.25,
            12.40,
            13.33,
            14.08,
            14.75,
            15.32,
            15.84,
            16.36,
            16.88,
            17.43,
            17.98,
            18.59,
            19.25,
            19.98,
            20.73,
            21.54,
            22.35,
            23.21,
            24.11,
            25.03,
            26.02,
            27.03,
            28.13,
            29.31,
            30.70,
            32.55,
            35.00,
        ),
        strict=True,
    )
)


def swemwbs_metric(raw_total: int) -> float:
    """Returns the SWEMWBS metric score for a raw total of 7-35."""
    try:
        return SWEMWBS_METRIC[raw_total]
    except KeyError:
        raise ValueError(f"SWEMWBS raw total must be 7-35; got {raw_total}") from None
