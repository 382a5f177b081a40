"""In Chromium against a real `spgw demo`: the IG pages (audit search, an entry, integrity, exports,
charts) pass axe-core at WCAG 2.2 A/AA; "Verify now" reports the log intact, and after an entry is
edited in the database it names that entry."""

from __future__ import annotations

import re
import sqlite3
import time

import pyotp
import pytest

from tests.gateway.console.browser import add_user, axe_violations, new_page
from tests.gateway.console.test_browser_sign_in import fresh_code

pytestmark = pytest.mark.e2e
PASSWORD = "an IG officer's long password"
NHS = "9990001022"  # the demo patient referred to two hosts who withdrew consent from one
USED: set[int] = set()


@pytest.fixture(scope="module")
def officer(live_demo) -> pyotp.TOTP:  # type: ignore[no-untyped-def]
    return pyotp.parse_uri(add_user(live_demo.data_dir, "iris.ig", "ig-officer", "QJM", PASSWORD))


def signed_in_page(live_demo, chromium, totp: pyotp.TOTP):  # type: ignore[no-untyped-def]
    page = new_page(chromium)
    page.goto(live_demo.base_url + "/console/")
    page.get_by_label("Username", exact=True).fill("iris.ig")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Security code", exact=True).fill(fresh_code(totp, USED))
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    return page


def test_ig_pages_pass_axe(live_demo, chromium, officer) -> None:
    page = signed_in_page(live_demo, chromium, officer)
    page.get_by_role("link", name="Audit search").first.click()
    page.wait_for_url(re.compile(r"/console/audit$"))
    assert axe_violations(page) == []

    page.get_by_label("Patient's NHS number").fill(NHS)
    page.get_by_label("Event type").select_option(label="Disclosure of patient data")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("tbody tr")
    assert rows.count() == 2
    assert " GMT" in rows.first.inner_text() and "disclosed to" in rows.first.inner_text()
    assert axe_violations(page) == []

    page.get_by_label("Patient's NHS number").fill("1234567890")
    page.get_by_role("button", name="Search").click()
    assert page.locator(".nhsuk-error-summary").is_visible()
    assert axe_violations(page) == []

    page.go_back()
    page.locator("tbody tr a").first.click()
    page.wait_for_url(re.compile(r"/console/audit/\d+$"))
    assert "What was disclosed" in page.inner_text("main")
    page.get_by_text("The entry as JSON").click()
    assert axe_violations(page) == []
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Inclusion proof")).click()
    assert download.value.suggested_filename.endswith("-inclusion-proof.json")

    page.goto(live_demo.base_url + "/console/exports")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Start the export").click()
    assert page.locator(".nhsuk-error-summary").is_visible()
    assert axe_violations(page) == []
    page.get_by_label("First day").fill("2020-01-01")
    page.get_by_label("Last day").fill(time.strftime("%Y-%m-%d"))
    page.get_by_label(re.compile("^CSV")).check()
    page.get_by_role("button", name="Start the export").click()
    ready = page.get_by_role("link", name="Download the export (CSV)")
    ready.wait_for()
    assert axe_violations(page) == []
    with page.expect_download() as download:
        ready.click()
    assert download.value.suggested_filename.endswith(".csv")

    page.goto(live_demo.base_url + "/console/charts")
    assert page.locator("svg#disclosures-chart").is_visible()
    assert axe_violations(page) == []
    page.context.close()


def _first_disclosure(data_dir) -> int:  # type: ignore[no-untyped-def]
    with sqlite3.connect(data_dir / "spgw.db", timeout=30) as db:
        return db.execute("SELECT min(seq) FROM audit_entry WHERE type_code = '110106'").fetchone()[0]


def _edit_entry(data_dir, seq: int) -> None:  # type: ignore[no-untyped-def]
    """What someone with write access to the database file might do: change one entry's content."""
    with sqlite3.connect(data_dir / "spgw.db", timeout=30) as db:
        (content,) = db.execute("SELECT content FROM audit_entry WHERE seq = ?", (seq,)).fetchone()
        db.execute("UPDATE audit_entry SET content = ? WHERE seq = ?", (content.replace("8VC", "9VC", 1), seq))


def test_verify_now_reports_intact_then_names_an_edited_entry(live_demo, chromium, officer) -> None:
    page = signed_in_page(live_demo, chromium, officer)
    page.get_by_role("link", name="Integrity").first.click()
    page.wait_for_url(re.compile(r"/console/integrity$"))
    assert "Agrees with the database" in page.inner_text("main")  # the demo published a checkpoint at start
    assert axe_violations(page) == []

    page.get_by_role("button", name="Verify now").click()
    result = page.get_by_role("heading", name=re.compile("Result: the audit log"))
    result.wait_for(timeout=60000)
    assert result.inner_text() == "Result: the audit log is intact"
    assert page.url.endswith("/console/integrity")  # htmx swapped the result in; no page load
    assert axe_violations(page) == []
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the signed verification statement").click()
    statement = download.value.path().read_text()
    assert "Result: INTACT" in statement and "\n\n\u2014 " in statement  # a signed note

    seq = _first_disclosure(live_demo.data_dir)
    _edit_entry(live_demo.data_dir, seq)
    page.reload()
    page.get_by_role("button", name="Verify now").click()
    failed = page.get_by_role("heading", name=re.compile("FAILED"))
    failed.wait_for(timeout=60000)
    named = page.get_by_role("link", name=f"entry {seq}", exact=True)
    assert named.is_visible()
    assert f"entry {seq}: content does not match its leaf hash" in page.inner_text("main")
    assert axe_violations(page) == []
    page.context.close()
