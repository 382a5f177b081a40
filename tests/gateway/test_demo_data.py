"""The demo data tells the IG story it is there for: a patient referred to two hosts, who both read
their packets, and who then withdrew consent from the second (issue: the disclosure report)."""

from __future__ import annotations

from sqlmodel import Session

from audit.reports import disclosure_report
from gateway.demo import DEMO_ORGANISATIONS, TWO_HOST_PATIENT, seed


def test_the_demo_patient_report_shows_both_disclosures_and_the_withdrawal(app, settings, client, token_for) -> None:
    engine = app.state.spgw.engine
    seed(engine, settings)
    seed(engine, settings)  # a restart seeds nothing twice
    nhs, _ = TWO_HOST_PATIENT
    names = {org_id: name for org_id, name, _ in DEMO_ORGANISATIONS}
    with Session(engine) as session:
        report = disclosure_report(session, nhs, organisation_names=names)
    assert sorted(d.recipient_org for d in report.disclosures) == ["8VC01", "8VC02"]
    assert all(d.fields and d.basis and d.basis.startswith("Consent/") for d in report.disclosures)
    after = [d for d in report.consent_decisions if d.recipient_org == "8VC02" and d.decision == "deny"]
    assert after, "the withdrawal from 8VC02 is in the report as a denial"
    assert max(d.audit_entry for d in report.disclosures) < after[-1].audit_entry

    answer = client.get(f"/ig/v1/patients/{nhs}/disclosures", headers=token_for("demo-ig"))
    assert answer.status_code == 200
    assert "8VC01" in answer.text and "8VC02" in answer.text
    notices = client.get("/vcse/v1/notices", headers=token_for("demo-vcse-b")).json()["notices"]
    assert [n["reason"] for n in notices] == ["consent-withdrawn"]
