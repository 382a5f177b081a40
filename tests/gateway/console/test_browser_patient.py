"""In Chromium against a real `spgw demo`: the IG officer looks up the demo patient, sees both hosts and
the withdrawal in UK time, downloads the PDF pack and reads it back; axe-core finds nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pyotp
import pytest
from pypdf import PdfReader

from tests.gateway.console.browser import add_user, axe_violations, new_page
from tests.gateway.console.test_browser_sign_in import PASSWORD, sign_in

pytestmark = pytest.mark.e2e
NHS = "9990001022"
HOSTS = ("Lincoln Befriending Network (demo)", "Citywide Debt and Housing Advice (demo)")


def test_patient_timeline_and_pdf_in_the_browser(live_demo, chromium) -> None:
    uri = add_user(live_demo.data_dir, "pat.ig", "ig-officer", "QJM", PASSWORD)
    page = new_page(chromium)
    sign_in(page, live_demo.base_url, "pat.ig", pyotp.parse_uri(uri), set())
    page.get_by_role("navigation", name="Menu").get_by_role("link", name="Patients").click()
    assert axe_violations(page) == []

    page.get_by_label("NHS number").fill("999 000 1023")  # wrong check digit
    page.get_by_role("button", name="Look up").click()
    assert "Modulus 11" in page.inner_text(".nhsuk-error-summary")
    assert axe_violations(page) == []

    page.get_by_label("NHS number").fill("999 000 1022")
    page.get_by_role("button", name="Look up").click()
    page.wait_for_url(f"**/console/patients/{NHS}")
    text = page.inner_text("main")
    for host in HOSTS:
        assert f"Referral details shared with {host}" in text
    assert "Withdrew consent to share with Citywide Debt and Housing Advice (demo)" in text
    assert "21 November 2026 at 9:00am (GMT)" in text
    assert axe_violations(page) == []

    with page.expect_download() as download:
        page.get_by_role("link", name="Download subject access pack (PDF)").click()
    body = Path(download.value.path()).read_bytes()
    flat = "".join("".join(p.extract_text() for p in PdfReader(io.BytesIO(body)).pages).split())
    assert NHS in flat and "Withdrewconsent" in flat
    assert all("".join(h.split()) in flat for h in HOSTS)
    page.context.close()
