"""The console's integrity page: "Verify now" in the background with progress, a signed statement, the
entry at fault named after an edit, a whole-database rewrite caught by the witness, checkpoint status."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import delete, text
from sqlmodel import Session, select

from audit.checkpoint import load_verifier_key, open_note
from audit.merkle import leaf_hash
from audit.store import AuditCheckpointRecord, AuditEntry
from gateway.console.roles import ConsoleRole
from gateway.demo import seed
from gateway.integrity import audit_signer, publish_due_checkpoint
from tests.gateway.console.conftest import csrf_of, make_account, sign_in


@pytest.fixture
def demo_log(app, engine, settings) -> None:  # type: ignore[no-untyped-def]
    seed(engine, settings)


def run_verification(browser, *, htmx: bool = False) -> str:  # type: ignore[no-untyped-def]
    """Presses "Verify now" and follows the job until it finishes; returns the finished fragment or page."""
    page = browser.get("/console/integrity")
    headers = {"HX-Request": "true"} if htmx else {}
    started = browser.post("/console/integrity/verify", data={"csrf_token": csrf_of(page.text)}, headers=headers)
    if htmx:
        assert started.status_code == 200
        job_url = re.search(r'hx-get="(/console/integrity/verify/[0-9a-f]+)"', started.text)
        assert job_url, started.text  # still running: the fragment polls itself
        url = job_url.group(1)
    else:
        assert started.status_code == 303
        url = started.headers["location"]
    for _ in range(200):
        done = browser.get(url, headers=headers)
        assert done.status_code == 200
        if "Verifying the audit log" not in done.text:
            return done.text
        time.sleep(0.1)
    raise AssertionError("the verification did not finish")


def test_verify_now_reports_intact_with_a_signed_statement(browser, ig_officer, demo_log, engine, settings) -> None:
    sign_in(browser, ig_officer)
    result = run_verification(browser)
    assert "the audit log is intact" in result
    link = re.search(r'href="(/console/integrity/verify/[0-9a-f]+/statement\.txt)"', result)
    assert link
    statement = browser.get(link.group(1))
    assert "attachment" in statement.headers["content-disposition"]
    body = open_note(statement.text, *load_verifier_key(audit_signer(settings).verifier_key()))  # signature checks out
    assert "Result: INTACT" in body and "Verified at" in body
    with Session(engine) as session:
        audited = session.exec(select(AuditEntry).where(AuditEntry.subtype_code == "audit-verified")).all()
    assert len(audited) == 1 and "ivy.ig" in (audited[0].content or "")


def test_htmx_polls_the_progress_fragment(browser, ig_officer, demo_log) -> None:
    sign_in(browser, ig_officer)
    fragment = run_verification(browser, htmx=True)
    assert "<html" not in fragment and "hx-get" not in fragment  # finished: no more polling
    assert "the audit log is intact" in fragment


def test_an_edited_entry_is_named(browser, ig_officer, demo_log, engine) -> None:
    with engine.begin() as conn:
        content = conn.execute(text("SELECT content FROM audit_entry WHERE seq = 5")).scalar_one()
        conn.execute(text("UPDATE audit_entry SET content = :c WHERE seq = 5"), {"c": content.replace("0", "1", 1)})
    sign_in(browser, ig_officer)
    result = run_verification(browser)
    assert "FAILED verification" in result
    assert 'href="/console/audit/5">entry 5</a>' in result
    assert "entry 5: content does not match its leaf hash" in result


def _rewrite_whole_database(engine, seq: int) -> None:  # type: ignore[no-untyped-def]
    """What an attacker with the database (and nothing else) can do: edit an entry, recompute its leaf
    hash, and drop the checkpoints that would give it away."""
    with engine.begin() as conn:
        content = conn.execute(text("SELECT content FROM audit_entry WHERE seq = :s"), {"s": seq}).scalar_one()
        forged = content.replace('"outcome":"0"', '"outcome":"4"', 1)
        assert forged != content
        conn.execute(
            text("UPDATE audit_entry SET content = :c, leaf_hash = :h, outcome = '4' WHERE seq = :s"),
            {"c": forged, "h": leaf_hash(forged.encode()).hex(), "s": seq},
        )
        conn.execute(delete(AuditCheckpointRecord))


def test_a_rewrite_of_the_whole_database_is_caught_by_the_witness(
    browser, ig_officer, demo_log, engine, settings
) -> None:
    assert publish_due_checkpoint(engine, settings) is not None
    with Session(engine) as session:
        seq = session.exec(select(AuditEntry.seq).where(AuditEntry.outcome == "0").order_by(AuditEntry.seq)).first()
    _rewrite_whole_database(engine, seq)
    sign_in(browser, ig_officer)
    status = browser.get("/console/integrity")
    assert "DISAGREES with the database" in status.text
    result = run_verification(browser)
    assert "FAILED verification" in result
    assert "rewritten together with its leaf hash" in result


def test_without_a_witness_the_same_rewrite_is_not_caught(browser, ig_officer, demo_log, engine) -> None:
    """Why the witness exists: the database alone cannot give the rewrite away."""
    _rewrite_whole_database(engine, 3)
    sign_in(browser, ig_officer)
    assert "the audit log is intact" in run_verification(browser)


def test_the_page_shows_the_last_checkpoint_its_age_and_the_witness(
    browser, ig_officer, demo_log, engine, settings
) -> None:
    publish_due_checkpoint(engine, settings)
    sign_in(browser, ig_officer)
    page = browser.get("/console/integrity")
    assert page.status_code == 200
    with Session(engine) as session:
        size = session.exec(select(AuditCheckpointRecord.size)).one()
    assert f"{size} entries, signed " in page.text and "less than a minute ago" in page.text
    assert f"Agrees with the database (checkpoint of {size} entries)" in page.text
    assert str(settings.witness_folder) in page.text


def test_a_job_is_its_owners_only(browser, app, ig_officer, demo_log, engine) -> None:
    sign_in(browser, ig_officer)
    page = browser.get("/console/integrity")
    started = browser.post("/console/integrity/verify", data={"csrf_token": csrf_of(page.text)})
    job_url = started.headers["location"]
    browser.cookies.clear()
    other = make_account(engine, "ian.ig", ConsoleRole.IG_OFFICER, "QJM")
    sign_in(browser, other)
    assert browser.get(job_url).status_code == 404
    assert browser.get(job_url + "/statement.txt").status_code == 404


def test_verify_now_needs_the_csrf_token(browser, ig_officer, demo_log) -> None:
    sign_in(browser, ig_officer)
    assert browser.post("/console/integrity/verify", data={"csrf_token": "forged"}).status_code == 403
