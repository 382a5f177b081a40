"""What a version of a Consent says about sharing: given, withdrawn, or neither (for the IG charts).

A version that permits sharing is a consent given; one that denies or ends it (R4 Consent.status
inactive or rejected, or provision.type deny, as the demo's withdrawal is) is a withdrawal.
"""

from __future__ import annotations

from typing import Any

GIVEN, WITHDRAWN = "given", "withdrawn"


def classify(consent: dict[str, Any]) -> str | None:
    """Returns 'given', 'withdrawn' or None (draft, proposed, entered-in-error) for one Consent version."""
    status = consent.get("status")
    provision = consent.get("provision") if isinstance(consent.get("provision"), dict) else {}
    if status in ("inactive", "rejected") or (status == "active" and provision.get("type") == "deny"):
        return WITHDRAWN
    if status == "active":
        return GIVEN
    return None
