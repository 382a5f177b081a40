"""In Chromium against a real `spgw demo`: the demo's VCSE staff account signs in, sees the demo
referral in plain English with nothing outside the agreement, accepts it, records ONS4 + SWEMWBS, and
the GP's FHIR search then shows the Task accepted and the Observations; after a consent withdrawal the
person's details are gone and the cease notice must be acknowledged; axe-core finds no WCAG 2.2 A/AA
violation on any inbox page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.demo import withdrawal
from tests.gateway.console.browser import axe_violations, new_page
from tests.gateway.test_cli_demo import demo_token, headers, spgw

pytestmark = pytest.mark.e2e
ADA, CLEO = "9990001006", "9990001022"  # the demo's patients referred to 8VC01 (gateway/demo.py)
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
# What the default agreement leaves out of Ada's packet (gateway/demo.py builds her referral).
OUTSIDE_THE_AGREEMENT = (ADA, "999 000 1006", "Demo", "NHS number", "Date of birth", "Address", "Gender")


@pytest.fixture(scope="module")
def page(live_demo, chromium) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """A Chromium page signed in as the demo's VCSE staff account, with the password the demo printed."""
    match = re.search(r"sign in as (\S+) \(vcse-staff, 8VC01\)\n\s+password (\S+);", live_demo.output())
    assert match, live_demo.output()
    username, password = match.groups()
    tab = new_page(chromium)
    tab.goto(live_demo.base_url + "/console/")
    tab.get_by_label("Username", exact=True).fill(username)
    tab.get_by_label("Password", exact=True).fill(password)
    tab.get_by_role("button", name="Continue").click()
    code = spgw("users", "code", username, "--data-dir", str(live_demo.data_dir))
    assert code.returncode == 0, code.stderr
    tab.get_by_label("Security code", exact=True).fill(code.stdout.strip())
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(re.compile(r"/console/inbox$"))  # vcse-staff land in their inbox
    yield tab
    tab.context.close()


def gp(live_demo):  # type: ignore[no-untyped-def]
    return httpx.Client(base_url=live_demo.base_url, headers=headers(demo_token(live_demo, "demo-gp")), timeout=30)


def test_accept_and_record_outcomes_that_reach_the_gp(live_demo, page) -> None:  # type: ignore[no-untyped-def]
    assert page.get_by_role("heading", name="Referral inbox").is_visible()
    assert axe_violations(page) == []
    inbox = page.inner_text("main")
    assert "Ada" in inbox and "Social isolation" in inbox
    assert "Bram" not in inbox  # the other host's referral
    page.get_by_role("link", name="Ada", exact=True).click()
    text = page.inner_text("main")
    assert "How to contact them" in text and "Phone (mobile): 07700900000" in text
    for outside in OUTSIDE_THE_AGREEMENT:
        assert outside not in text, outside
    assert axe_violations(page) == []

    page.get_by_role("link", name="Decline this referral").click()
    page.get_by_role("button", name="Decline referral").click()  # no reason chosen
    assert "Select why you are declining" in page.inner_text(".nhsuk-error-summary")
    assert axe_violations(page) == []
    page.go_back()
    page.go_back()

    page.get_by_role("button", name="Accept referral").click()
    assert "You accepted this referral" in page.inner_text("main")
    assert axe_violations(page) == []

    page.get_by_role("link", name="Record outcomes").click()
    assert axe_violations(page) == []
    page.get_by_label("First assessment (baseline)").check()
    page.get_by_label("Overall, how satisfied are you with your life nowadays?").fill("11")
    page.get_by_role("button", name="Save outcomes").click()
    summary = page.locator(".nhsuk-error-summary")
    assert "Life satisfaction must be between 0 and 10; got 11" in summary.inner_text()
    assert page.evaluate("document.activeElement.closest('.nhsuk-error-summary') !== null")
    assert axe_violations(page) == []

    for label, value in (
        ("Overall, how satisfied are you with your life nowadays?", "6"),
        ("Overall, to what extent do you feel that the things you do in your life are worthwhile?", "7"),
        ("Overall, how happy did you feel yesterday?", "5"),
        ("Overall, how anxious did you feel yesterday?", "4"),
    ):
        page.get_by_label(label, exact=True).fill(value)
    for item, answer in enumerate((3, 4, 3, 3, 4, 2, 3), start=1):  # raw total 22
        page.locator(f"#swemwbs-{item}" if answer == 1 else f"#swemwbs-{item}-{answer}").check()
    page.get_by_role("button", name="Save outcomes").click()
    assert page.get_by_role("heading", name="Outcomes recorded").is_visible()
    assert page.inner_text("#swemwbs-metric") == "19.98"  # SWEMWBS raw 22 -> metric 19.98
    assert axe_violations(page) == []

    with gp(live_demo) as client:
        [sr] = [
            e["resource"]
            for e in client.get("/fhir/ServiceRequest", params={"patient:identifier": f"{NHS_SYSTEM}|{ADA}"}).json()[
                "entry"
            ]
            if e["resource"]["resourceType"] == "ServiceRequest"
        ]
        task = client.get("/fhir/Task", params={"focus": f"ServiceRequest/{sr['id']}"}).json()["entry"][0]["resource"]
        assert task["status"] == "accepted"
        found = client.get("/fhir/Observation", params={"patient:identifier": f"{NHS_SYSTEM}|{ADA}"}).json()
        observations = [e["resource"] for e in found["entry"]]
        assert {o["status"] for o in observations} == {"final"}
        assert sorted(o["code"]["coding"][0]["display"] for o in observations) == [
            "ONS4 personal well-being (panel)",
            "SWEMWBS total raw score",
        ]
        swemwbs = next(o for o in observations if o["code"]["coding"][0]["display"].startswith("SWEMWBS"))
        assert swemwbs["valueQuantity"]["value"] == 22


def test_after_a_cease_the_persons_details_are_gone(live_demo, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(live_demo.base_url + "/console/inbox")
    page.get_by_role("link", name="Cleo", exact=True).click()
    cleo_url = page.url
    assert "Cleo" in page.inner_text("main")
    with gp(live_demo) as client:
        made = client.post(
            "/fhir/Consent",
            json=withdrawal(CLEO, "8VC01", "2026-11-30T09:00:00+00:00"),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert made.status_code == 201, made.text
    page.goto(live_demo.base_url + "/console/inbox")
    assert page.get_by_text("Stop: consent has ended").is_visible()
    assert "Cleo" not in page.inner_text("main")
    assert axe_violations(page) == []
    page.goto(cleo_url)
    text = page.inner_text("main")
    assert "Cleo" not in text and "07700900000" not in text
    assert "The person's details are no longer shown" in text
    assert page.get_by_role("button", name=re.compile("^Acknowledge")).is_visible()
    assert axe_violations(page) == []
    page.get_by_role("button", name=re.compile("^Acknowledge")).click()
    assert "Acknowledged by demo-vcse-staff" in page.inner_text("main")
    page.goto(live_demo.base_url + "/console/inbox")
    assert not page.get_by_text("Stop: consent has ended").is_visible()


def test_the_csv_export_downloads(live_demo, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(live_demo.base_url + "/console/inbox")
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download your referrals")).click()
    content = Path(download.value.path()).read_text(encoding="utf-8")
    assert content.splitlines()[0] == "referral_id,received,referrer,status,outcome_submissions,last_outcome_stage"
    assert "Ada" not in content and ADA not in content
