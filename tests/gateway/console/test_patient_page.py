"""The IG officer's patient page and subject access pack, in-process against the demo data."""

from __future__ import annotations

import csv
import io
import json

import orjson
import pytest
from pypdf import PdfReader
from sqlmodel import Session, select

from audit.merkle import verify_inclusion
from audit.store import AuditEntry
from gateway.console.roles import ConsoleRole
from gateway.demo import DEMO_CLIENTS, _context, seed
from gateway.pipeline import workflow
from tests.gateway.console.conftest import csrf_of, make_account, sign_in

NHS = "9990001022"  # the demo patient referred to two hosts who withdrew consent from one
HOSTS = ("Lincoln Befriending Network (demo)", "Citywide Debt and Housing Advice (demo)")


@pytest.fixture
def signed_in(app, engine, settings, browser, ig_officer):  # type: ignore[no-untyped-def]
    seed(engine, settings)
    sign_in(browser, ig_officer)
    return browser


def _lookups(engine) -> list[dict]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.patient_nhs == NHS, AuditEntry.type_code == "110100"))
        return [orjson.loads(r.content) for r in rows]


def test_the_timeline_names_hosts_fields_consent_and_withdrawal_in_uk_time(signed_in) -> None:
    page = signed_in.get(f"/console/patients/{NHS}")
    assert page.status_code == 200
    text = page.text
    for host in HOSTS:
        assert f"Referral details shared with {host}" in text
    assert "Withdrew consent to share with Citywide Debt and Housing Advice (demo)" in text
    assert "21 November 2026 at 9:00am (GMT)" in text  # the withdrawal, 09:00Z in winter
    assert "first name, phone number or email address" in text and "person.contact_routes" not in text
    assert "Article 6(1)(e)" in text and "Article 9(2)(h)" in text
    assert "Recorded by" in text and "Riverside Surgery (demo)" in text
    assert "Cease notice sent to Citywide Debt and Housing Advice (demo)" in text


def test_repeated_reads_by_the_same_host_are_one_row_with_a_count(signed_in, engine, settings) -> None:
    host = next(c for c in DEMO_CLIENTS if c.organisation == "8VC01")
    for _ in range(3):  # a CRM polling
        ctx = _context(engine, settings, host)
        with ctx.transaction():
            workflow.list_packets(ctx, None)
    text = signed_in.get(f"/console/patients/{NHS}").text
    assert text.count(f"Referral details shared with {HOSTS[0]}") == 1
    assert "3 more times" in text


def test_every_look_up_is_audited_with_the_officer(signed_in, engine) -> None:
    before = len(_lookups(engine))
    signed_in.get(f"/console/patients/{NHS}")
    events = _lookups(engine)
    assert len(events) == before + 1
    agents = json.dumps(events[-1]["agent"])
    assert "ivy.ig" in agents and "console" in agents
    assert events[-1]["subtype"][0]["code"] == "console-patient-lookup"


def test_the_look_up_form_checks_the_nhs_number(signed_in) -> None:
    form = signed_in.get("/console/patients")
    assert '<label class="nhsuk-label" for="nhs_number">NHS number</label>' in form.text
    bad = signed_in.post("/console/patients", data={"nhs_number": "999 000 1023", "csrf_token": csrf_of(form.text)})
    assert bad.status_code == 200 and "nhsuk-error-summary" in bad.text and "Modulus 11" in bad.text
    good = signed_in.post("/console/patients", data={"nhs_number": "999 000 1022", "csrf_token": csrf_of(form.text)})
    assert good.status_code == 303 and good.headers["location"] == f"/console/patients/{NHS}"


def test_other_roles_cannot_open_the_patient_page(app, engine, settings) -> None:
    from fastapi.testclient import TestClient

    seed(engine, settings)
    staff = make_account(engine, "val.staff", ConsoleRole.VCSE_STAFF, "8VC01")
    with TestClient(app, base_url="http://127.0.0.1", follow_redirects=False) as client:
        sign_in(client, staff)
        assert "/console/patients" not in client.get("/console/").text  # not in the menu
        refused = client.get(f"/console/patients/{NHS}")
        assert refused.status_code == 403 and "Withdrew" not in refused.text
        assert client.get(f"/console/patients/{NHS}/access-pack.pdf").status_code == 403


def test_the_pdf_pack_names_the_patient_both_hosts_and_the_withdrawal(signed_in) -> None:
    answer = signed_in.get(f"/console/patients/{NHS}/access-pack.pdf")
    assert answer.status_code == 200 and answer.content.startswith(b"%PDF")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(answer.content)).pages)
    flat = "".join(text.split())
    assert NHS in flat
    for host in HOSTS:
        assert "".join(host.split()) in flat
    assert "Withdrewconsent" in flat
    assert "none altered or missing" in text.replace("\n", " ")
    assert "Appendix: inclusion proofs" in text


def test_the_csv_pack_carries_inclusion_proofs_that_verify(signed_in) -> None:
    answer = signed_in.get(f"/console/patients/{NHS}/access-pack.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    shared = [r for r in rows if len(r) > 1 and r[1].startswith("Referral details shared with")]
    assert len(shared) == 2
    for row in shared:
        for proof in json.loads(row[4]):
            assert verify_inclusion(
                bytes.fromhex(proof["leaf_hash"]),
                proof["leaf_index"],
                proof["tree_size"],
                [bytes.fromhex(h) for h in proof["audit_path"]],
                bytes.fromhex(proof["root"]),
            )
    statement = next(r for r in rows if r and r[0] == "Verification")
    assert "none altered or missing" in statement[1]
