"""Coded non-clinical need categories: what a packet's `referral.need_categories` may carry.

A referrer's free text (`ServiceRequest.reasonCode.text`, a GP's "Lives alone since bereavement...")
can carry clinical detail, so the packet sends coded needs only (IG rule 2, docs/design.md). No
national code system covers social prescribing needs (docs/codes.md), so we publish a small local
one whose codes follow the gaps the VCSE reports name (employment, transport, bereavement, mental
health, housing) and the PRSB standard's "needs and concerns"; a SNOMED CT coding the referrer sends
is passed on by its display.
"""

from __future__ import annotations

from typing import Any

from profiles.systems import LOCAL_NEED_CATEGORY, SNOMED

# code -> display (CodeSystem https://sp-gateway.dev/fhir/CodeSystem/need-category, local).
NEED_CATEGORIES: dict[str, str] = {
    "social-isolation": "Social isolation",
    "bereavement": "Bereavement",
    "mental-wellbeing": "Mental wellbeing",
    "physical-activity": "Physical activity",
    "housing": "Housing",
    "debt-and-money": "Debt and money",
    "employment": "Employment",
    "education-and-skills": "Education and skills",
    "transport": "Transport",
    "carer-support": "Carer support",
    "food": "Food",
    "arts-and-culture": "Arts and culture",
}


def coded_label(concept: Any) -> str | None:
    """Returns the label of the first coding in a known system: our display for a local need code,
    the display (else the code) of a SNOMED CT coding; None for free text only or unknown codes."""
    if not isinstance(concept, dict):
        return None
    for coding in concept.get("coding") or []:
        if not isinstance(coding, dict):
            continue
        code = coding.get("code")
        if coding.get("system") == LOCAL_NEED_CATEGORY and code in NEED_CATEGORIES:
            return NEED_CATEGORIES[code]
        if coding.get("system") == SNOMED and isinstance(code, str) and code.strip():
            display = coding.get("display")
            return display.strip() if isinstance(display, str) and display.strip() else code.strip()
    return None
