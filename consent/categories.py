"""The data categories a patient can agree to share, and the purpose a referral is shared for.

Codes live in our local CodeSystem `profiles.systems.LOCAL_DATA_CATEGORY`: no national code
system names these groupings, so a Consent says which ones it covers with
`Consent.provision.code` codings in that system (see docs/consent.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from profiles.systems import LOCAL_DATA_CATEGORY, V3_ACT_REASON


class DataCategory(StrEnum):
    """A group of fields a Consent can permit; the value is the code in LOCAL_DATA_CATEGORY."""

    CONTACT_DETAILS = "contact-details"
    COMMUNICATION_AND_ACCESS = "communication-and-access"
    NEEDS_AND_CONCERNS = "needs-and-concerns"
    WHAT_MATTERS_TO_ME = "what-matters-to-me"
    SAFEGUARDING = "safeguarding"
    IDENTIFIERS = "identifiers"
    DEMOGRAPHICS = "demographics"

    @property
    def display(self) -> str:
        return _DISPLAY[self]

    def coding(self) -> dict[str, Any]:
        """Returns this category as an R4 Coding, as it appears in `Consent.provision.code.coding`."""
        return {"system": LOCAL_DATA_CATEGORY, "code": self.value, "display": self.display}


_DISPLAY: dict[DataCategory, str] = {
    DataCategory.CONTACT_DETAILS: "First name, contact routes and preferred contact time",
    DataCategory.COMMUNICATION_AND_ACCESS: "Language, interpreter need and accessibility needs",
    DataCategory.NEEDS_AND_CONCERNS: "Non-clinical need categories and the reason for referral",
    DataCategory.WHAT_MATTERS_TO_ME: "What matters to me, in the patient's own words",
    DataCategory.SAFEGUARDING: "That a safeguarding concern exists, without detail",
    DataCategory.IDENTIFIERS: "NHS number",
    DataCategory.DEMOGRAPHICS: "Date of birth, full address and gender",
}

ALL_CATEGORIES: frozenset[str] = frozenset(c.value for c in DataCategory)

# A social prescribing referral is shared for the patient's care: v3-ActReason TREAT
# ("treatment"), the purposeOfUse BALP puts on a PrivacyDisclosure (docs/design.md, audit patterns).
PURPOSE_SYSTEM = V3_ACT_REASON
SOCIAL_PRESCRIBING_PURPOSE = "TREAT"
