"""Need categories leave the gateway as codes only: the referrer's free text never does."""

from __future__ import annotations

from mappings.need_categories import NEED_CATEGORIES, coded_label
from profiles.systems import LOCAL_NEED_CATEGORY, SNOMED, SP_REFERRAL


def test_local_code_takes_our_display_not_the_senders() -> None:
    concept = {"coding": [{"system": LOCAL_NEED_CATEGORY, "code": "bereavement", "display": "Widowed in March"}]}
    assert coded_label(concept) == NEED_CATEGORIES["bereavement"] == "Bereavement"


def test_free_text_only_concept_gives_nothing() -> None:
    assert coded_label({"text": "Lives alone since bereavement; low mood"}) is None


def test_unknown_local_code_and_systemless_coding_give_nothing() -> None:
    assert coded_label({"coding": [{"system": LOCAL_NEED_CATEGORY, "code": "not-a-code"}]}) is None
    assert coded_label({"coding": [{"display": "Housing"}]}) is None


def test_snomed_coding_passes_by_display_else_code() -> None:
    assert coded_label({"coding": [{"system": SNOMED, "code": SP_REFERRAL, "display": "Referral"}]}) == "Referral"
    assert coded_label({"coding": [{"system": SNOMED, "code": SP_REFERRAL}]}) == SP_REFERRAL
