"""The console's charts: disclosures per recipient per month (each packet once) and consents given and
withdrawn per month, as SVG with no script, with the same numbers in a table beside each chart."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from xml.etree import ElementTree

import pytest
from sqlmodel import Session

from audit.stats import disclosures_per_recipient_month
from consent.history import classify
from gateway.auth.principal import ROLE_SCOPES, Principal, Role
from gateway.console.charts import Series, bar_chart, nice_maximum
from gateway.console.pages.charts import last_months, month_of
from gateway.demo import DEMO_ORGANISATIONS, seed
from gateway.storage.consent_history import consents_per_month
from tests.gateway.console.conftest import sign_in

NAMES = {org_id: name for org_id, name, _ in DEMO_ORGANISATIONS}


@pytest.fixture
def demo_log(app, engine, settings) -> None:  # type: ignore[no-untyped-def]
    seed(engine, settings)


def test_a_chart_is_an_svg_image_with_a_title_description_and_one_bar_per_value() -> None:
    svg = bar_chart("c", "Title <&>", "Described", ["Nov 2026", "Dec 2026"], [Series("A", [1, 3]), Series("B", [0, 7])])
    root = ElementTree.fromstring(str(svg))  # noqa: S314 (our own output) well-formed XML, text escaped
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.get("role") == "img" and root.get("aria-labelledby") == "c-title c-desc"
    assert root.find("s:title", ns).text == "Title <&>"
    bars = [r for r in root.findall("s:rect", ns) if r.find("s:title", ns) is not None]
    assert [b.find("s:title", ns).text for b in bars] == [
        "A, Nov 2026: 1",
        "B, Nov 2026: 0",
        "A, Dec 2026: 3",
        "B, Dec 2026: 7",
    ]
    heights = [float(b.get("height")) for b in bars]
    assert heights[3] > heights[2] > heights[0] > heights[1] == 0
    assert "<script" not in str(svg) and "style=" not in str(svg)


def test_axis_maximum_is_round() -> None:
    assert [nice_maximum(v) for v in (0, 3, 5, 9, 21, 130)] == [4, 4, 8, 20, 40, 200]


def test_months_are_uk_months() -> None:
    assert month_of(datetime(2026, 6, 30, 23, 30, tzinfo=UTC)) == "2026-07"  # BST: already July in the UK
    assert month_of(datetime(2026, 12, 31, 23, 30)) == "2026-12"  # GMT, naive means UTC
    assert last_months(datetime(2026, 2, 10, tzinfo=UTC), 3) == ["2025-12", "2026-01", "2026-02"]


def test_consent_versions_are_classified_as_given_or_withdrawn() -> None:
    assert classify({"status": "active", "provision": {"type": "permit"}}) == "given"
    assert classify({"status": "active", "provision": {"type": "deny"}}) == "withdrawn"
    assert classify({"status": "inactive"}) == "withdrawn"
    assert classify({"status": "draft"}) is None


def test_demo_counts_each_packet_once_and_the_withdrawal(demo_log, engine) -> None:
    now = month_of(datetime.now(UTC))
    with Session(engine) as session:
        disclosures = disclosures_per_recipient_month(session, month_of)
        ig = Principal("console", "QJM", Role.IG_OFFICER, frozenset(ROLE_SCOPES[Role.IG_OFFICER]))
        consents = consents_per_month(session, ig, month_of)
    assert set(disclosures) and all(month == now for month, _ in disclosures)
    assert consents[(now, "withdrawn")] == 1
    assert consents[(now, "given")] >= 2
    with Session(engine) as again:  # reading the same packets again does not add to the count
        assert disclosures_per_recipient_month(again, month_of) == disclosures


def test_the_page_shows_both_charts_with_their_tables(browser, ig_officer, demo_log, engine) -> None:
    sign_in(browser, ig_officer)
    page = browser.get("/console/charts")
    assert page.status_code == 200
    assert page.text.count("<svg") >= 3  # the NHS logo and two charts
    assert 'id="disclosures-chart"' in page.text and 'id="consents-chart"' in page.text
    with Session(engine) as session:
        disclosures: Counter = disclosures_per_recipient_month(session, month_of)
    this_month = datetime.now(UTC).strftime("%b %Y")
    for (_, org), count in disclosures.items():
        assert f">{NAMES[org]}</th>" in page.text
        assert f"{NAMES[org]}, {this_month}: {count}</title>" in page.text
    assert "<script>" not in page.text
