"""NHS number check digit (Modulus 11), as NHS England's NHS number standard defines it.

An NHS number is 10 digits; the tenth is a check digit over the first nine: multiply
digit 1 by 10, digit 2 by 9, ... digit 9 by 2, add the products, take the remainder
after dividing by 11 and subtract it from 11. A result of 11 means check digit 0; a
result of 10 means no valid NHS number starts with those nine digits.

Diagnostics never repeat the number itself: it identifies a patient.
"""

from __future__ import annotations

_DIGITS = frozenset("0123456789")
_WEIGHTS = range(10, 1, -1)  # 10, 9, ..., 2 for digits 1..9


def check_digit(first_nine: str) -> int | None:
    """Returns the Modulus 11 check digit for nine ASCII digits, or None when it would be 10."""
    total = sum(int(d) * w for d, w in zip(first_nine, _WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def explain(value: object) -> str | None:
    """Returns a plain-English reason why `value` is not a valid NHS number, or None if it is valid."""
    if not isinstance(value, str):
        return "An NHS number must be given as a string of 10 digits."
    if not value:
        return "The NHS number is empty."
    if not set(value) <= _DIGITS:
        return "An NHS number has only the digits 0-9 (no spaces, letters or other characters)."
    if len(value) != 10:
        return f"An NHS number has exactly 10 digits; this one has {len(value)}."
    expected = check_digit(value[:9])
    if expected is None:
        return "No valid NHS number starts with these nine digits: their Modulus 11 check digit would be 10."
    if int(value[9]) != expected:
        return "The last digit does not match the Modulus 11 check digit of the first nine digits."
    return None


def is_valid(value: object) -> bool:
    """Returns True if `value` is 10 ASCII digits whose last digit is the Modulus 11 check digit."""
    return explain(value) is None
