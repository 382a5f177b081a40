"""The console's audit search: filters reach audit/search.py, paging, an entry in plain English (UK
time, organisation names) and as JSON, the inclusion proof download; every search and view audited."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from audit.events import AuditContext, system_event
from audit.merkle import verify_inclusion
from audit.store import AuditEntry, append
from gateway.console.roles import ConsoleRole
from gateway.demo import TWO_HOST_PATIENT, seed
from tests.gateway.console.conftest import make_account, sign_in

NHS = TWO_HOST_PATIENT[0]


@pytest.fixture
def demo_log(app, engine, settings) -> None:  # type: ignore[no-untyped-def]
    seed(engine, settings)


def _entries(engine, **where) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        query = select(AuditEntry).order_by(AuditEntry.seq)
        for name, value in where.items():
            query = query.where(getattr(AuditEntry, name) == value)
        return list(session.exec(query))


def test_search_by_patient_and_type_shows_the_disclosures_in_uk_time_with_names(
    browser, ig_officer, demo_log, engine
) -> None:
    sign_in(browser, ig_officer)
    page = browser.get("/console/audit", params={"nhs": NHS, "type": "110106"})
    assert page.status_code == 200, page.text
    disclosures = _entries(engine, patient_nhs=NHS, type_code="110106")
    assert len(disclosures) == 2
    for entry in disclosures:
        assert f'href="/console/audit/{entry.seq}"' in page.text
    assert "Patient data was disclosed to" in page.text
    assert " GMT" in page.text  # November: UK local time is GMT
    unrelated = _entries(engine, type_code="110114")
    assert all(f'href="/console/audit/{e.seq}"' not in page.text for e in unrelated)


def test_every_search_is_audited_without_the_nhs_number_in_its_text(browser, ig_officer, demo_log, engine) -> None:
    sign_in(browser, ig_officer)
    before = len(_entries(engine))
    browser.get("/console/audit", params={"nhs": NHS})
    searches = [e for e in _entries(engine)[before:] if e.subtype_code == "search-type"]
    assert len(searches) == 1
    event = json.loads(searches[0].content)
    assert searches[0].patient_nhs == NHS  # the patient entity carries it
    assert NHS not in event["outcomeDesc"]
    assert "ivy.ig" in searches[0].content and "console" in searches[0].content


def test_bad_filters_are_refused_with_the_nhs_error_summary(browser, ig_officer, demo_log) -> None:
    sign_in(browser, ig_officer)
    page = browser.get("/console/audit", params={"nhs": "9990001023", "from": "2026-13-01", "client": "a b"})
    assert page.status_code == 400
    assert "nhsuk-error-summary" in page.text
    assert 'href="#nhs"' in page.text and 'href="#from"' in page.text and 'href="#client"' in page.text


def test_filters_by_organisation_client_outcome_and_dates(browser, ig_officer, demo_log, engine) -> None:
    sign_in(browser, ig_officer)
    by_client = browser.get("/console/audit", params={"client": "demo-gp", "type": "rest"})
    assert by_client.status_code == 200
    gp_rows = [e for e in _entries(engine, type_code="rest") if '"value":"demo-gp"' in (e.content or "")]
    assert gp_rows and f'href="/console/audit/{gp_rows[-1].seq}"' in by_client.text
    failed = browser.get("/console/audit", params={"outcome": "8", "client": "demo-gp"})
    assert "No entries match this search." in failed.text
    none_yet = browser.get("/console/audit", params={"from": "2001-01-01", "to": "2001-01-31"})
    assert "No entries match this search." in none_yet.text
    host = _entries(engine, type_code="110106")[0].recipient_org
    by_org = browser.get("/console/audit", params={"org": host, "type": "110106"})
    assert by_org.status_code == 200 and "Patient data was disclosed to" in by_org.text
    assert browser.get("/console/audit", params={"org": "NOT-AN-ORG"}).status_code == 400


def test_pages_of_25_newest_first(browser, ig_officer, demo_log, engine) -> None:
    sign_in(browser, ig_officer)
    with Session(engine) as session:
        for n in range(30):
            append(session, system_event(AuditContext(), activity="test-filler", outcome=0, description=str(n),
                                         recorded=datetime.now(UTC)))  # fmt: skip
        session.commit()
    newest = max(e.seq for e in _entries(engine))
    first = browser.get("/console/audit")
    assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
    second = browser.get("/console/audit", params={"page": 2})
    assert 'rel="prev"' in second.text
    assert f'href="/console/audit/{newest}"' in first.text  # newest first (this search's own entry comes after)
    assert f'href="/console/audit/{newest - 25}"' in second.text


def test_an_entry_in_plain_english_as_json_and_its_inclusion_proof(browser, ig_officer, demo_log, engine) -> None:
    sign_in(browser, ig_officer)
    entry = _entries(engine, patient_nhs=NHS, type_code="110106")[0]
    page = browser.get(f"/console/audit/{entry.seq}")
    assert page.status_code == 200
    assert "Patient data was disclosed to" in page.text
    assert "What was disclosed" in page.text and "Recipient" in page.text
    assert NHS in page.text
    raw = browser.get(f"/console/audit/{entry.seq}/entry.json")
    assert raw.content == entry.content.encode()
    assert "attachment" in raw.headers["content-disposition"]
    proof = browser.get(f"/console/audit/{entry.seq}/proof.json")
    assert proof.status_code == 200 and "attachment" in proof.headers["content-disposition"]
    body = proof.json()
    leaf = hashlib.sha256(b"\x00" + raw.content).digest()
    path = [bytes.fromhex(h) for h in body["audit_path"]]
    assert verify_inclusion(leaf, entry.seq, body["tree_size"], path, bytes.fromhex(body["root"]))
    about = f"audit entry {entry.seq}"
    reads = [e for e in _entries(engine) if e.subtype_code == "read" and about in (e.content or "")]
    assert len(reads) == 3  # viewed, JSON downloaded, proof downloaded


def test_unknown_entry_is_a_clear_404(browser, ig_officer, demo_log) -> None:
    sign_in(browser, ig_officer)
    page = browser.get("/console/audit/999999")
    assert page.status_code == 404 and "no entry 999999" in page.text


def test_other_roles_and_api_tokens_cannot_search(browser, app, engine, token_for) -> None:
    admin = make_account(engine, "ada.admin", ConsoleRole.ADMIN, "QJM")
    sign_in(browser, admin)
    assert browser.get("/console/audit").status_code == 403
    browser.cookies.clear()
    page = browser.get("/console/audit", headers=token_for("demo-ig"))
    assert page.status_code == 303 and page.headers["location"].startswith("/console/sign-in")
