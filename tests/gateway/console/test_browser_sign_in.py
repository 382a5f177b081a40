"""In Chromium against a real `spgw demo`: sign in with password and TOTP, wrong ones refused, the
demo's printed sign-in works, keyboard-only use, and axe-core finds no WCAG 2.2 A/AA violation."""

from __future__ import annotations

import re
import time

import pyotp
import pytest

from tests.gateway.console.browser import add_user, axe_violations, new_page
from tests.gateway.test_cli_demo import spgw

pytestmark = pytest.mark.e2e
PASSWORD = "a long enough browser password"


def sign_in(page, base_url: str, username: str, totp: pyotp.TOTP, used: set[int]) -> None:  # type: ignore[no-untyped-def]
    page.goto(base_url + "/console/")
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Security code", exact=True).fill(fresh_code(totp, used))
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()


def fresh_code(totp: pyotp.TOTP, used: set[int]) -> str:
    """A code from a time step not used before (the console accepts each step once)."""
    while True:
        step = int(time.time()) // totp.interval
        if step not in used and time.time() % totp.interval < totp.interval - 2:
            used.add(step)
            return totp.at(step * totp.interval)
        time.sleep(0.5)


def test_sign_in_with_password_and_code_refusing_wrong_ones(live_demo, chromium) -> None:
    uri = add_user(live_demo.data_dir, "bea.ig", "ig-officer", "QJM", PASSWORD)
    totp, used = pyotp.parse_uri(uri), set()
    page = new_page(chromium)
    page.goto(live_demo.base_url + "/")
    assert page.url.endswith("/console/sign-in")
    assert axe_violations(page) == []

    page.get_by_label("Username", exact=True).fill("bea.ig")
    page.get_by_label("Password", exact=True).fill(PASSWORD + "x")
    page.get_by_role("button", name="Continue").click()
    assert page.locator(".nhsuk-error-summary").is_visible()
    assert "not recognised" in page.inner_text(".nhsuk-error-summary")
    assert page.evaluate("document.activeElement.closest('.nhsuk-error-summary') !== null")  # focus moved there
    assert axe_violations(page) == []

    page.get_by_label("Username", exact=True).fill("bea.ig")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()
    code = page.get_by_label("Security code", exact=True)
    assert code.is_visible()
    assert axe_violations(page) == []
    wrong = next(c for c in ("123456", "654321") if c != totp.now())
    code.fill(wrong)
    page.get_by_role("button", name="Sign in").click()
    assert "security code is not right" in page.inner_text(".nhsuk-error-summary")
    assert axe_violations(page) == []

    page.get_by_label("Security code", exact=True).fill(fresh_code(totp, used))
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("button", name="Sign out").is_visible()
    assert axe_violations(page) == []
    page.context.close()


def test_keyboard_only_sign_in_with_the_demo_account(live_demo, chromium) -> None:
    out = live_demo.output()
    match = re.search(r"sign in as (\S+) \(ig-officer.*\n\s+password (\S+);", out)
    assert match, out
    username, password = match.groups()
    page = new_page(chromium)
    page.goto(live_demo.base_url + "/console/")
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.textContent.trim()") == "Skip to main content"
    page.get_by_label("Username", exact=True).focus()
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(password)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/console/sign-in/code"))
    code = spgw("users", "code", username, "--data-dir", str(live_demo.data_dir))
    assert code.returncode == 0, code.stderr
    page.get_by_label("Security code", exact=True).focus()
    page.keyboard.type(code.stdout.strip())
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/console/$"))
    assert page.get_by_role("button", name="Sign out").is_visible()
    page.context.close()
