"""Console test helpers: an account with a known password and TOTP secret, a browser-like client on
loopback, and signing in through the real forms (CSRF tokens read from the pages, as a browser would)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from gateway.console.models import ConsoleUser
from gateway.console.roles import ConsoleRole
from gateway.console.users import add_user

PASSWORD = "correct horse battery staple"


@dataclass
class Account:
    username: str
    password: str
    secret: str

    def code(self, offset_steps: int = 0) -> str:
        totp = pyotp.TOTP(self.secret)
        return totp.at(time.time() + offset_steps * totp.interval)


def make_account(engine, username: str, role: ConsoleRole, org: str) -> Account:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        add_user(session, username=username, role=role, organisation_id=org, password=PASSWORD)
        session.commit()
        user = session.get(ConsoleUser, username)
        assert user is not None
        return Account(username, PASSWORD, user.totp_secret)


@pytest.fixture
def ig_officer(app, engine) -> Account:  # type: ignore[no-untyped-def]
    return make_account(engine, "ivy.ig", ConsoleRole.IG_OFFICER, "QJM")


@pytest.fixture
def browser(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """A client on loopback (where the demo's cookies are not Secure), not following redirects."""
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as client:
        yield client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def submit_password(client: TestClient, username: str, password: str):  # type: ignore[no-untyped-def]
    page = client.get("/console/sign-in")
    return client.post(
        "/console/sign-in", data={"username": username, "password": password, "csrf_token": csrf_of(page.text)}
    )


def submit_code(client: TestClient, code: str):  # type: ignore[no-untyped-def]
    page = client.get("/console/sign-in/code")
    assert page.status_code == 200, page.headers.get("location")
    return client.post("/console/sign-in/code", data={"security_code": code, "csrf_token": csrf_of(page.text)})


def sign_in(client: TestClient, account: Account) -> None:
    assert submit_password(client, account.username, account.password).status_code == 303
    done = submit_code(client, account.code())
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith("/console/")


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's Chromium under Playwright, for one test module; skipped only when it is not installed.
    Not for the whole session: Playwright's sync API keeps an asyncio loop running in the main thread
    until it stops, and anyio tests in later modules (test_auth_server.py) cannot start their own."""
    from tests.gateway.console.browser import CHROMIUM, launch

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: apt-get install chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def live_demo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real `spgw demo` on a free 127.0.0.1 port with its own data folder, for one test module."""
    from tests.gateway.test_cli_demo import running_demo

    root = tmp_path_factory.mktemp("console-demo")
    with running_demo(root / "data", root / "demo.log") as demo:
        yield demo
