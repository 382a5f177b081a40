"""The timeline's pure parts: UK local time, plain words, grouping of re-reads, lawful basis."""

from __future__ import annotations

from datetime import UTC, datetime

from audit.reports import Disclosure
from gateway.console.timeline import CONSENT_BASIS, PUBLIC_TASK_BASIS, build, consent_facts, uk_time

NAMES = {"8VC01": "Lincoln Befriending Network", "A81001": "Riverside Surgery"}


def _read(seq: int, when: str, packet: str = "P1") -> Disclosure:
    return Disclosure(when, "8VC01", "Lincoln Befriending Network", ["person.first_name"], "Consent/c1", packet,
                      "ServiceRequest/s1", "pulled by the host", "0", seq)  # fmt: skip


def test_uk_local_time_follows_british_summer_time() -> None:
    assert uk_time("2026-07-01T09:30:00+00:00") == "1 July 2026 at 10:30am (BST)"
    assert uk_time(datetime(2026, 12, 1, 15, 5, tzinfo=UTC)) == "1 December 2026 at 3:05pm (GMT)"


def test_re_reads_of_one_packet_are_grouped_and_a_new_packet_is_a_new_row() -> None:
    reads = [_read(1, "2026-11-20T10:00:00+00:00"), _read(2, "2026-11-20T10:05:00+00:00"),
             _read(3, "2026-11-20T10:10:00+00:00"), _read(4, "2026-11-21T10:00:00+00:00", packet="P2")]  # fmt: skip
    timeline = build("9990001022", referrals=[], disclosures=reads, consents=[], notices=[], names=NAMES)
    assert [e.audit_entries for e in timeline.disclosures] == [[1, 2, 3], [4]]
    first = dict(timeline.disclosures[0].details)
    assert first["Read again"] == "2 more times, last on 20 November 2026 at 10:10am (GMT)"
    assert first["What was shared"] == "first name"


def test_lawful_basis_is_public_task_unless_the_consent_policy_says_consent() -> None:
    consent = {
        "status": "active",
        "dateTime": "2026-11-20T10:00:00+00:00",
        "provision": {"type": "permit", "actor": [{"reference": {"identifier": {"value": "8VC01"}}}]},
    }
    stored = datetime(2026, 11, 20, tzinfo=UTC)
    public = consent_facts("c1", "A81001", consent, stored)
    explicit = consent_facts("c2", "A81001", {**consent, "policy": [{"uri": "https://example.org/uk-gdpr-9(2)(a)"}]},
                             stored)  # fmt: skip
    timeline = build("9990001022", referrals=[], disclosures=[], consents=[public, explicit], notices=[], names=NAMES)
    bases = [dict(e.details)["Lawful basis"] for e in timeline.entries]
    assert bases == [PUBLIC_TASK_BASIS, CONSENT_BASIS]
    assert timeline.entries[0].title == "Agreed to share their referral with Lincoln Befriending Network"
