"""Identifier rules shared by the referral and consent profiles: NHS numbers and ODS codes.

NHS number: system https://fhir.nhs.uk/Id/nhs-number, 10 digits, Modulus 11 (nhs_number.py).
ODS organisation code: system https://fhir.nhs.uk/Id/ods-organization-code; ODS codes are
3 to 10 upper-case letters and digits (practices like A81001, trusts like RX1, sites like RX1AB).
"""

from __future__ import annotations

import re
from typing import Any

from profiles import nhs_number
from profiles.outcomes import Issue
from profiles.systems import NHS_NUMBER, ODS_CODE

_ODS_SHAPE = re.compile(r"[A-Z0-9]{3,10}")
_ODS_FOLDED = ODS_CODE.casefold()


def ods_problem(value: object) -> str | None:
    """Returns why `value` is not shaped like an ODS code, or None if it is."""
    if not isinstance(value, str) or not value:
        return "An ODS code must be a non-empty string."
    if _ODS_SHAPE.fullmatch(value):
        return None
    if _ODS_SHAPE.fullmatch(value.upper()):
        return "ODS codes are upper case."
    return "An ODS code is 3 to 10 upper-case letters and digits."


def as_list(value: Any) -> list[Any]:
    """Returns `value` if it is a list, else [] (profile rules run on dicts that may be malformed)."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    """Returns `value` if it is a dict, else {}."""
    return value if isinstance(value, dict) else {}


def nhs_number_issue(value: object, where: str, whose: str = "The NHS number") -> Issue | None:
    """Returns an issue (code value) if `value` is not a valid NHS number, else None."""
    reason = nhs_number.explain(value)
    if reason is None:
        return None
    return Issue("value", f"{where}: {whose} is not valid. {reason}", where)


def is_ods_system(system: object) -> bool:
    """True for the ODS organisation code system. Compared without case: the BaRS examples spell it
    https://fhir.nhs.uk/id/ods-organization-code (as they spell http-error-codes with `Codesystem`)."""
    return isinstance(system, str) and system.casefold() == _ODS_FOLDED


def ods_identifier_issues(identifier: dict[str, Any], where: str) -> list[Issue]:
    """Returns issues for an Identifier with the ODS system whose value is missing or badly shaped."""
    if not is_ods_system(identifier.get("system")):
        return []
    value = identifier.get("value")
    if value is None:
        return [
            Issue(
                "required",
                f"{where}.value: an ODS identifier needs a value (the ODS code).",
                f"{where}.value",
            )
        ]
    reason = ods_problem(value)
    if reason is None:
        return []
    return [Issue("value", f"{where}.value: not a valid ODS code. {reason}", f"{where}.value")]


def nhs_numbers(resource: dict[str, Any] | None) -> list[tuple[int, Any]]:
    """Returns (index, value) for each identifier of `resource` with the NHS number system."""
    return [
        (i, ident.get("value"))
        for i, ident in enumerate(as_list(as_dict(resource).get("identifier")))
        if isinstance(ident, dict) and ident.get("system") == NHS_NUMBER
    ]
