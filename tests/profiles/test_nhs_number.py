"""NHS number Modulus 11: weights 10..2 over the first nine digits, check = 11 - sum % 11."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles.nhs_number import check_digit, explain, is_valid


def reference_check(first_nine: str) -> int | None:
    """The algorithm written out again, independently of the module under test."""
    total = 0
    for position, digit in enumerate(first_nine):
        total += int(digit) * (10 - position)
    check = 11 - (total % 11)
    return {11: 0, 10: None}.get(check, check)


def test_uk_core_example_number_passes_worked_by_hand():
    # 9*10 + 9*9 + 1*8 + 2*7 + 0*6 + 0*5 + 3*4 + 8*3 + 8*2 = 245; 245 % 11 = 3; 11 - 3 = 8
    assert 9 * 10 + 9 * 9 + 1 * 8 + 2 * 7 + 0 + 0 + 3 * 4 + 8 * 3 + 8 * 2 == 245
    assert is_valid("9912003888")
    assert explain("9912003888") is None


@pytest.mark.parametrize("number", ["9434765919", "9999999468", "9000000009"])
def test_known_valid_numbers_pass(number):
    assert reference_check(number[:9]) == int(number[9])
    assert is_valid(number)


def test_bars_example_number_fails_its_check_digit():
    # 3*10 + 4*9 + 7*8 + 8*7 + 5*6 + 2*5 + 6*4 + 9*3 + 8*2 = 285; 285 % 11 = 10; 11 - 10 = 1, not 5
    assert reference_check("347852698") == 1
    assert not is_valid("3478526985")
    assert "check digit" in explain("3478526985")


def test_check_digit_of_ten_means_no_valid_number():
    # 1*10 + 0 + ... + 1*2 = 12; 12 % 11 = 1; 11 - 1 = 10: no tenth digit can make it valid
    assert check_digit("100000001") is None
    for last in "0123456789":
        assert not is_valid("100000001" + last)
    assert "10" in explain("1000000010")


def test_remainder_zero_gives_check_digit_zero():
    assert reference_check("000000000") == 0
    assert is_valid("0000000000")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("991200388", "10 digits"),
        ("99120038880", "10 digits"),
        ("", "empty"),
        ("99120O3888", "digits 0-9"),
        ("991 200 3888", "digits 0-9"),
        ("٩٩١٢٠٠٣٨٨٨", "digits 0-9"),  # Arabic-Indic digits: str.isdigit() would say yes
        (9912003888, "string"),
        (None, "string"),
    ],
)
def test_malformed_values_are_explained(value, reason):
    assert not is_valid(value)
    assert reason in explain(value)


def test_explanations_never_repeat_the_number():
    assert "3478526985" not in explain("3478526985")


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_agrees_with_the_reference_algorithm(first_nine):
    expected = reference_check(first_nine)
    for last in "0123456789":
        assert is_valid(first_nine + last) == (expected is not None and int(last) == expected)
