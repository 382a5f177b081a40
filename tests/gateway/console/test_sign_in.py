"""Signing in to the console: password then TOTP, refusals audited and rate limited, cookies, CSRF,
idle timeout, and the wall between console sessions and API tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from audit.store import AuditEntry
from gateway.console.models import ConsoleSession
from tests.gateway.console.conftest import csrf_of, sign_in, submit_code, submit_password


def _auth_events(engine) -> list[dict]:  # type: ignore[no-untyped-def]
    import json

    with Session(engine) as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.type_code == "110114").order_by(AuditEntry.seq)).all()
        return [json.loads(r.content) for r in rows]


def test_root_redirects_to_the_console_sign_in_with_links_to_the_api(browser) -> None:
    first = browser.get("/")
    assert first.status_code in (302, 303, 307) and first.headers["location"] == "/console/"
    second = browser.get("/console/")
    assert second.headers["location"].startswith("/console/sign-in")
    page = browser.get("/console/sign-in")
    assert page.status_code == 200
    assert '<label class="nhsuk-label" for="username">Username</label>' in page.text
    assert '<label class="nhsuk-label" for="password">Password</label>' in page.text
    assert 'href="/fhir/metadata"' in page.text and 'href="/docs"' in page.text


def test_password_then_security_code_signs_in(browser, ig_officer) -> None:
    after_password = submit_password(browser, ig_officer.username, ig_officer.password)
    assert after_password.headers["location"] == "/console/sign-in/code"
    code_page = browser.get("/console/sign-in/code")
    assert '<label class="nhsuk-label" for="security_code">Security code</label>' in code_page.text
    assert browser.get("/console/").status_code == 303  # the password alone opens nothing

    done = submit_code(browser, ig_officer.code())
    assert done.status_code == 303
    home = browser.get("/console/")
    assert home.status_code == 200 and "Sign out" in home.text and "ivy.ig" in home.text


def test_wrong_password_is_refused_with_an_error_summary_and_audited(browser, engine, ig_officer) -> None:
    page = submit_password(browser, ig_officer.username, ig_officer.password + "x")
    assert page.status_code == 200
    assert "nhsuk-error-summary" in page.text and "not recognised" in page.text
    assert browser.get("/console/sign-in/code").headers["location"] == "/console/sign-in"
    refused = [e for e in _auth_events(engine) if e["outcome"] != "0"]
    assert refused and "not recognised" in refused[-1]["outcomeDesc"]
    assert ig_officer.password not in str(refused)


def test_wrong_and_replayed_security_codes_are_refused(browser, engine, ig_officer) -> None:
    submit_password(browser, ig_officer.username, ig_officer.password)
    wrong = submit_code(browser, "000000" if ig_officer.code() != "000000" else "111111")
    assert wrong.status_code == 200 and "security code is not right" in wrong.text
    assert browser.get("/console/").status_code == 303

    code = ig_officer.code()
    assert submit_code(browser, code).status_code == 303
    other = type(browser)(browser.app, base_url="http://127.0.0.1", follow_redirects=False)
    submit_password(other, ig_officer.username, ig_officer.password)
    replay = submit_code(other, code)
    assert replay.status_code == 200 and "not right" in replay.text  # a code is good once
    assert any("security code" in e["outcomeDesc"] for e in _auth_events(engine) if e["outcome"] != "0")


def test_failed_sign_ins_are_rate_limited(browser, ig_officer, app) -> None:
    limit = app.state.spgw.settings.console_max_failures
    for _ in range(limit):
        submit_password(browser, ig_officer.username, "wrong password here")
    paused = submit_password(browser, ig_officer.username, ig_officer.password)
    assert paused.status_code == 200 and "Too many failed sign-ins" in paused.text


def test_cookies_are_httponly_strict_and_secure_except_on_loopback(app, ig_officer) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as loopback:
        cookie = submit_password(loopback, ig_officer.username, ig_officer.password).headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie
    with TestClient(app, base_url="https://console.example.nhs.uk", follow_redirects=False) as remote:
        cookie = submit_password(remote, ig_officer.username, ig_officer.password).headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_forms_without_the_csrf_token_are_refused(browser, ig_officer) -> None:
    browser.get("/console/sign-in")
    refused = browser.post("/console/sign-in", data={"username": ig_officer.username, "password": ig_officer.password})
    assert refused.status_code == 403 and "form has expired" in refused.text

    sign_in(browser, ig_officer)
    forged = browser.post("/console/sign-out", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert browser.get("/console/").status_code == 200  # still signed in
    token = csrf_of(browser.get("/console/").text)
    assert browser.post("/console/sign-out", data={"csrf_token": token}).status_code == 303
    assert browser.get("/console/").status_code == 303


def test_a_session_idle_for_15_minutes_is_signed_out(browser, engine, ig_officer) -> None:
    sign_in(browser, ig_officer)
    with Session(engine) as session:
        for record in session.exec(select(ConsoleSession)).all():
            record.last_seen = datetime.now(UTC) - timedelta(minutes=16)
            session.add(record)
        session.commit()
    after = browser.get("/console/")
    assert after.status_code == 303 and after.headers["location"] == "/console/sign-in?reason=idle"
    notice = browser.get(after.headers["location"])
    assert "had not used the console for 15 minutes" in notice.text
    with Session(engine) as session:
        assert session.exec(select(ConsoleSession)).all() == []


def test_pages_carry_a_csp_without_unsafe_inline(browser) -> None:
    page = browser.get("/console/sign-in")
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["cache-control"] == "no-store"
    css = browser.get("/console/static/vendor/nhsuk-frontend/nhsuk-frontend.min.css")
    assert css.status_code == 200 and "nhsuk-header" in css.text and "assets.nhs.uk" not in css.text


def test_an_api_token_opens_no_console_page(browser, token_for) -> None:
    for client_id in ("demo-gp", "demo-vcse", "demo-ig"):
        answer = browser.get("/console/", headers=token_for(client_id))
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/sign-in")


def test_a_console_session_cannot_call_the_api(browser, ig_officer) -> None:
    sign_in(browser, ig_officer)
    cookie = browser.cookies.get("spgw_console")
    assert cookie
    answer = browser.get("/ig/v1/patients/9990001022/disclosures", headers={"Cookie": f"spgw_console={cookie}"})
    assert answer.status_code == 401
