"""The console's date-range exports: NDJSON (the stored bytes, so leaf hashes can be recomputed) and CSV
as downloads, made in the background with progress; the owner only; every export audited."""

from __future__ import annotations

import csv
import io
import os
import re
import stat
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from audit.store import AuditEntry
from gateway.console.pages.exports import export_folder, remove_old_exports, uk_day_start
from gateway.console.roles import ConsoleRole
from gateway.demo import seed
from tests.gateway.console.conftest import csrf_of, make_account, sign_in

TODAY = datetime.now(UTC).date().isoformat()


@pytest.fixture
def demo_log(app, engine, settings) -> None:  # type: ignore[no-untyped-def]
    seed(engine, settings)


def start(browser, **form: str):  # type: ignore[no-untyped-def]
    page = browser.get("/console/exports")
    return browser.post("/console/exports", data={"csrf_token": csrf_of(page.text), **form})


def finished(browser, url: str) -> str:  # type: ignore[no-untyped-def]
    for _ in range(200):
        page = browser.get(url)
        if "Written so far" not in page.text:
            return page.text
        time.sleep(0.1)
    raise AssertionError("the export did not finish")


def _live(engine) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.exec(select(AuditEntry).order_by(AuditEntry.seq)))


def test_ndjson_export_is_the_stored_entries_byte_for_byte(browser, ig_officer, demo_log, engine, settings) -> None:
    sign_in(browser, ig_officer)
    before = _live(engine)
    started = start(browser, **{"from": "2020-01-01", "to": TODAY, "format": "ndjson"})
    assert started.status_code == 303
    page = finished(browser, started.headers["location"])
    assert "Your export is ready" in page
    link = re.search(r'href="(/console/exports/[0-9a-f]+/download)"', page)
    assert link
    download = browser.get(link.group(1))
    assert download.status_code == 200
    assert f'filename="audit-2020-01-01-to-{TODAY}.ndjson"' in download.headers["content-disposition"]
    lines = download.content.decode().splitlines()
    stored = {e.seq: e.content for e in before}
    assert len(lines) >= len(before)
    assert [line for line in lines[: len(before)]] == [stored[s] for s in sorted(stored)]
    files = list(export_folder(settings).iterdir())
    assert len(files) == 1 and stat.S_IMODE(os.stat(files[0]).st_mode) == 0o600
    exported = [e for e in _live(engine) if e.subtype_code == "audit-exported"]
    assert len(exported) == 1 and "ivy.ig" in (exported[0].content or "")


def test_csv_export_of_a_uk_date_range(browser, ig_officer, demo_log, engine) -> None:
    sign_in(browser, ig_officer)
    started = start(browser, **{"from": TODAY, "to": TODAY, "format": "csv"})
    page = finished(browser, started.headers["location"])
    link = re.search(r'href="(/console/exports/[0-9a-f]+/download)"', page)
    assert link
    rows = list(csv.reader(io.StringIO(browser.get(link.group(1)).text)))
    assert rows[0][0] == "seq" and len(rows) > 1
    window = (uk_day_start(datetime.now(UTC).date()), uk_day_start(datetime.now(UTC).date() + timedelta(days=1)))
    expected = [e.seq for e in _live(engine) if window[0] <= e.recorded.replace(tzinfo=UTC) < window[1]]
    assert [int(r[0]) for r in rows[1:]] == expected[: len(rows) - 1]


def test_the_job_page_polls_with_htmx_and_answers_htmx_with_the_fragment(browser, ig_officer, demo_log) -> None:
    sign_in(browser, ig_officer)
    url = start(browser, **{"from": "2020-01-01", "to": TODAY, "format": "csv"}).headers["location"]
    fragment = browser.get(url, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert 'role="status"' in fragment.text and 'id="export-job"' in fragment.text
    if "Written so far" in fragment.text:  # still running: it polls itself
        assert f'hx-get="{url}" hx-trigger="load delay:1s"' in fragment.text
    assert "Your export is ready" in finished(browser, url)


def test_bad_ranges_are_refused_with_the_error_summary(browser, ig_officer, demo_log) -> None:
    sign_in(browser, ig_officer)
    page = start(browser, **{"from": "2026-11-30", "to": "2026-11-01", "format": "xml"})
    assert page.status_code == 400
    assert "nhsuk-error-summary" in page.text
    assert 'href="#to"' in page.text and 'href="#format-ndjson"' in page.text
    assert start(browser, **{"from": "", "to": "2026-02-30", "format": "csv"}).status_code == 400


def test_only_the_person_who_made_an_export_can_download_it(browser, ig_officer, demo_log, engine) -> None:
    sign_in(browser, ig_officer)
    started = start(browser, **{"from": "2020-01-01", "to": TODAY, "format": "csv"})
    url = started.headers["location"]
    finished(browser, url)
    browser.cookies.clear()
    sign_in(browser, make_account(engine, "ian.ig", ConsoleRole.IG_OFFICER, "QJM"))
    assert browser.get(url).status_code == 404
    assert browser.get(url + "/download").status_code == 404


def test_old_export_files_are_removed(settings, tmp_path) -> None:
    folder = export_folder(settings)
    old = folder / ("a" * 32 + ".csv")
    new = folder / ("b" * 32 + ".csv")
    for path in (old, new):
        path.write_text("x")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    remove_old_exports(folder, datetime.now(UTC))
    assert not old.exists() and new.exists()
