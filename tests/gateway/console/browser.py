"""The browser-test harness: a real `spgw demo` on 127.0.0.1, Debian's Chromium driven by Playwright,
and axe-core (axe-playwright-python) at WCAG 2.2 A/AA.

Playwright's own browser download cannot work here (no internet): the suite never runs
`playwright install`; it launches /usr/bin/chromium (`apt-get install chromium`, which .ci/run does).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.gateway.test_cli_demo import SPGW, clean_env

CHROMIUM = Path("/usr/bin/chromium")
# axe-core tags for WCAG 2.0, 2.1 and 2.2 at levels A and AA.
WCAG_22_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def launch(playwright):  # type: ignore[no-untyped-def]
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])


def new_page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(locale="en-GB", timezone_id="Europe/London", accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15000)
    return page


def axe_violations(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Every axe-core violation of WCAG 2.2 A/AA on the page as it is now (any impact), as short lines."""
    from axe_playwright_python.sync_playwright import Axe

    result = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_22_AA}})
    return [
        f"{v['id']} ({v['impact']}): {', '.join(n['target'][0] for n in v['nodes'][:3])}"
        for v in result.response["violations"]
    ]


def data_dir_args(data_dir: Path) -> list[str]:
    return ["--data-dir", str(data_dir)]


def add_user(data_dir: Path, username: str, role: str, org: str, password: str) -> str:
    """`spgw users add` as an administrator would run it; returns the printed otpauth:// URI."""
    done = subprocess.run(
        [
            str(SPGW),
            "users",
            "add",
            username,
            "--role",
            role,
            "--org",
            org,
            "--password-stdin",
            *data_dir_args(data_dir),
        ],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    match = re.search(r"otpauth://\S+", done.stdout)
    assert match, done.stdout
    return match.group(0)
