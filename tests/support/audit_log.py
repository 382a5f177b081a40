"""Helpers for audit tests: fill a log with realistic events, tamper with rows, run `spgw audit`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import Engine, text

from audit.events import AuditContext, consent_decision_event, disclosure_event, rest_event, system_event
from audit.store import append
from gateway.db import transaction

START = datetime(2026, 1, 1, tzinfo=UTC)
PATIENT = "9990001006"  # 999 test range, passes Modulus 11
CTX = AuditContext(client_id="demo-gp", organisation="A81001", role="referrer", request_id="r-1")


def event(i: int, recorded: datetime) -> dict[str, Any]:
    """Returns the i-th event of a small, realistic mix (create, consent decision, disclosure, worker)."""
    kind = i % 4
    if kind == 0:
        return rest_event(
            CTX,
            interaction="create",
            resource_type="ServiceRequest",
            resource_id=f"sr-{i}",
            outcome=0,
            patient_nhs=PATIENT,
            description=None,
            recorded=recorded,
        )
    if kind == 1:
        return consent_decision_event(
            CTX,
            recipient_org="8VC01",
            patient_nhs=PATIENT,
            decision="permit",
            consent_ref=f"Consent/c-{i}",
            categories=["contact"],
            reason="active opt-in Consent names the recipient",
            recorded=recorded,
        )
    if kind == 2:
        return disclosure_event(
            CTX,
            recipient_org="8VC01",
            patient_nhs=PATIENT,
            referral_ref=f"ServiceRequest/sr-{i - 2}",
            packet_id=f"PKT-{i}",
            fields=["name.given", "contact.route"],
            consent_ref=f"Consent/c-{i - 1}",
            outcome=0,
            recorded=recorded,
        )
    return system_event(AuditContext(), activity="delivery-attempted", outcome=0, description=None, recorded=recorded)


def fill_log(engine: Engine, n: int, *, start: datetime = START, step: timedelta = timedelta(hours=1)) -> None:
    """Appends n events, recorded `step` apart from `start`, through the one append path."""
    with transaction(engine) as session:
        for i in range(n):
            append(session, event(i, start + i * step))


def execute(engine: Engine, sql: str, **params: Any) -> None:
    """Runs one tampering statement outside the gateway, as an attacker with database access would."""
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def spgw_audit(settings: Any, *args: str) -> Result:
    """Runs `spgw audit <args> --data-dir <folder>` against the test's database."""
    from gateway.cli import main

    env = {"SPGW_DATA_DIR": str(settings.data_dir), "SPGW_DATABASE_URL": settings.database_url}
    return CliRunner().invoke(main, ["audit", *args, "--data-dir", str(settings.data_dir)], env=env)
