"""A packet in plain English: every packet field has a label, values are written for people, and
only what the packet holds is shown."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.inbox import plain
from mappings.packet import ALL_FIELDS


def test_every_packet_field_has_a_plain_english_label() -> None:
    assert set(plain.LABELS) == set(ALL_FIELDS)


def test_values_are_written_for_people() -> None:
    packet = {
        "referral_id": "REF-1",
        "person": {
            "first_name": "Robin",
            "contact_routes": [
                {"type": "phone", "value": "01131231234", "use": "home"},
                {"type": "email", "value": "r@example.org"},
            ],
            "nhs_number": "9912003888",
            "date_of_birth": "1948-03-11",
            "interpreter_required": True,
            "address": {"lines": ["2 Mill Lane"], "city": "Lincoln", "postcode": "LN1 2AB"},
        },
        "referral": {"need_categories": ["Social isolation"], "priority": "asap", "safeguarding_concern": True},
    }
    shown = {row.label: row.value for row in plain.rows(packet)}
    assert shown["How to contact them"] == ["Phone (home): 01131231234", "Email: r@example.org"]
    assert shown["NHS number"] == "991 200 3888"
    assert shown["Date of birth"] == "11 March 1948"
    assert shown["Needs an interpreter"] == "Yes"
    assert shown["Address"] == ["2 Mill Lane", "Lincoln", "LN1 2AB"]
    assert shown["Priority"] == "As soon as possible"
    assert shown["Safeguarding"].startswith("The referrer has flagged a safeguarding concern")
    assert plain.title(packet) == "Robin"


def test_only_what_the_packet_holds_is_shown() -> None:
    rows = plain.rows({"referral_id": "REF-2", "person": {"first_name": "Ada"}})
    assert [r.label for r in rows] == ["First name"]
    assert plain.title({"referral_id": "REF-2"}) == "Referral REF-2"


def test_times_are_uk_local() -> None:
    assert plain.uk_time("2026-07-01T13:05:00+00:00") == "1 July 2026 at 2:05pm"  # BST
    assert plain.uk_time(datetime(2026, 12, 2, 9, 30, tzinfo=UTC)) == "2 December 2026 at 9:30am"  # GMT
