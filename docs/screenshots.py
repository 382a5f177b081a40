#!/usr/bin/env python3
"""Takes the console screenshots in docs/console.md from a fresh `spgw demo`, with Debian's Chromium.

    .venv/bin/python docs/screenshots.py        # writes docs/images/console-*.png

Starts the demo on a free loopback port with a throwaway data folder, signs in as the demo IG officer
and then the demo VCSE staff member (passwords from the demo's output, security codes from
`spgw users code`), visits each page and saves a screenshot. Nothing is downloaded: Chromium is
/usr/bin/chromium. (Adapted from the first console engineer's script.)
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
SPGW = Path(sys.executable).parent / "spgw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sign_in(page: Page, base: str, data: Path, username: str, password: str) -> None:
    page.goto(base + "/console/sign-in")
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Continue").click()
    code = subprocess.run(  # noqa: S603 — the project's own command
        [str(SPGW), "users", "code", username, "--data-dir", str(data)], capture_output=True, text=True, check=True
    ).stdout.strip()
    page.get_by_label("Security code", exact=True).fill(code)
    page.get_by_role("button", name="Sign in").click()


def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="spgw-shots-")) / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = data.parent / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen(  # noqa: S603 — the project's own command
            [str(SPGW), "demo", "--port", str(port), "--mllp-port", str(free_port()), "--data-dir", str(data)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(240):
            try:
                if httpx.get(base + "/fhir/metadata", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        logins = dict(re.findall(r"sign in as (\S+) .*\n\s+password (\S+);", log.read_text()))
        ig = next(name for name in logins if "ig" in name)
        staff = next(name for name in logins if "vcse" in name)
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(
                viewport={"width": 1100, "height": 900}, locale="en-GB", timezone_id="Europe/London"
            )
            page.goto(base + "/")
            page.screenshot(path=OUT / "console-sign-in.png")
            sign_in(page, base, data, ig, logins[ig])
            page.goto(base + "/console/patients")
            page.get_by_label("NHS number").fill("999 000 1022")
            page.get_by_role("button", name="Look up").click()
            page.screenshot(path=OUT / "console-patient.png", full_page=True)
            page.goto(base + "/console/integrity")
            page.get_by_role("button", name="Verify now").click()
            page.get_by_text("the audit log is intact").wait_for(timeout=60000)
            page.screenshot(path=OUT / "console-integrity.png", full_page=True)
            page.goto(base + "/console/audit")
            page.screenshot(path=OUT / "console-audit.png")
            page.goto(base + "/console/charts")
            page.screenshot(path=OUT / "console-charts.png", full_page=True)
            page.context.clear_cookies()
            sign_in(page, base, data, staff, logins[staff])
            page.goto(base + "/console/inbox")
            page.screenshot(path=OUT / "console-inbox.png", full_page=True)
            browser.close()
    finally:
        demo.terminate()
        demo.wait(10)
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
