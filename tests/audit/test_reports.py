"""The disclosure report answers "who received what about this patient, when and on what basis" from the
audit log alone: disclosures with their exact fields and how they left, consent decisions, consent records."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from audit.events import AuditContext, consent_decision_event, disclosure_event, rest_event
from audit.reports import CSV_HEADER, disclosure_report
from audit.retention import archive
from audit.store import append
from gateway.db import transaction
from gateway.integrity import audit_signer
from gateway.schema import init_db

PATIENT = "9990001006"
OTHER = "9990001014"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
VCSE = AuditContext(client_id="demo-vcse", organisation="8VC01", role="vcse")
WORKER = AuditContext(client_id="spgw-worker", role="system")
GP = AuditContext(client_id="demo-gp", organisation="A81001", role="referrer")
NAMES = {"8VC01": "Lincoln Befriending Network (demo)", "8VC02": "Citywide Debt and Housing Advice (demo)"}


def _disclosure(ctx: AuditContext, nhs: str, recipient: str, packet: str, fields: list[str], at: datetime) -> dict:
    return disclosure_event(
        ctx,
        recipient_org=recipient,
        patient_nhs=nhs,
        referral_ref="ServiceRequest/sr-1",
        packet_id=packet,
        fields=fields,
        consent_ref="Consent/c-1",
        outcome=0,
        recorded=at,
    )


@pytest.fixture
def log(engine: Engine) -> Engine:
    init_db(engine)
    events = [
        _disclosure(VCSE, PATIENT, "8VC01", "PKT-A", ["name.given", "contact.route"], T0),
        _disclosure(WORKER, PATIENT, "8VC02", "PKT-B", ["name.given", "needs.categories"], T0 + timedelta(hours=1)),
        _disclosure(VCSE, OTHER, "8VC01", "PKT-C", ["name.given"], T0 + timedelta(hours=2)),
        rest_event(
            GP,
            interaction="update",
            resource_type="Consent",
            resource_id="c-2",
            outcome=0,
            patient_nhs=PATIENT,
            description="Consent updated (status inactive)",
            recorded=T0 + timedelta(hours=3),
        ),
        consent_decision_event(
            GP,
            recipient_org="8VC02",
            patient_nhs=PATIENT,
            decision="deny",
            consent_ref=None,
            categories=[],
            reason="no active Consent names 8VC02",
            recorded=T0 + timedelta(hours=3),
        ),
    ]
    with transaction(engine) as session:
        for e in events:
            append(session, e)
    return engine


def test_disclosures_name_recipient_fields_basis_and_route(log: Engine) -> None:
    with Session(log) as session:
        report = disclosure_report(session, PATIENT, organisation_names=NAMES)
    assert [(d.recipient_org, d.packet_id, d.fields, d.how) for d in report.disclosures] == [
        ("8VC01", "PKT-A", ["name.given", "contact.route"], "pulled by the host"),
        ("8VC02", "PKT-B", ["name.given", "needs.categories"], "webhook delivery"),
    ]
    first = report.disclosures[0]
    assert first.recipient_name == NAMES["8VC01"]
    assert (first.basis, first.referral, first.when) == (
        "Consent/c-1",
        "ServiceRequest/sr-1",
        "2026-03-01T09:00:00.000000Z",
    )


def test_later_denial_and_consent_change_are_reported(log: Engine) -> None:
    with Session(log) as session:
        report = disclosure_report(session, PATIENT, organisation_names=NAMES)
    [denial] = report.consent_decisions
    assert (denial.recipient_org, denial.decision, denial.reason) == ("8VC02", "deny", "no active Consent names 8VC02")
    assert denial.basis == "no Consent on record"
    assert denial.audit_entry > report.disclosures[1].audit_entry
    [record] = report.consent_records
    assert (record.consent, record.change, record.by_organisation) == (
        "Consent/c-2",
        "Consent updated (status inactive)",
        "A81001",
    )


def test_other_patients_are_not_in_the_report(log: Engine) -> None:
    with Session(log) as session:
        report = disclosure_report(session, OTHER, organisation_names=NAMES)
    assert [d.packet_id for d in report.disclosures] == ["PKT-C"]
    assert report.consent_decisions == [] and report.consent_records == []


def test_csv_has_readable_header_and_rows_in_log_order(log: Engine) -> None:
    with Session(log) as session:
        report = disclosure_report(session, PATIENT, organisation_names=NAMES)
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert tuple(rows[0]) == CSV_HEADER
    assert [r[1] for r in rows[1:]] == ["disclosure", "disclosure", "consent record", "consent decision"]
    assert rows[1][4] == "name.given; contact.route" and rows[1][3] == NAMES["8VC01"]


def test_archived_entries_are_counted_with_their_segment(log: Engine, settings, tmp_path: Path) -> None:
    result = archive(
        log, settings, audit_signer(settings), out_dir=tmp_path / "segments", before=T0 + timedelta(minutes=30)
    )
    with Session(log) as session:
        report = disclosure_report(session, PATIENT, organisation_names=NAMES)
    assert report.archived_entries == 1 and report.archive_segments == [result.segment]
    assert [d.packet_id for d in report.disclosures] == ["PKT-B"]
