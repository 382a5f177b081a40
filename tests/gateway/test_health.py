"""/healthz and /readyz: unauthenticated, and saying nothing but ok or unavailable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlmodel import select

from gateway.db import transaction
from gateway.models import OutboxMessage

OK = {"status": "ok"}
UNAVAILABLE = {"status": "unavailable"}


def test_health_and_readiness_answer_without_a_token(client) -> None:
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json() == OK
        assert response.headers["cache-control"] == "no-store"


def test_readiness_is_red_when_the_schema_is_behind_and_says_no_more(client, engine, caplog) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == UNAVAILABLE  # which check failed is for the operator's log, not the caller
    assert response.headers["retry-after"].isdigit()
    assert "schema not current" in caplog.text
    assert client.get("/healthz").status_code == 200  # alive all the same


def test_readiness_is_red_when_due_deliveries_wait_too_long_for_a_worker(client, engine, settings) -> None:
    now = datetime.now(UTC)
    overdue = now - timedelta(seconds=settings.ready_outbox_max_lag + 60)
    with transaction(engine) as session:
        session.add(
            OutboxMessage(kind="referral", target="8VC01", dedup_key="PKT-LATE", body="{}", next_attempt_at=overdue)
        )
    assert client.get("/readyz").status_code == 503
    with transaction(engine) as session:  # a receiver that is down: its message waits for its backoff
        row = session.exec(select(OutboxMessage).where(OutboxMessage.dedup_key == "PKT-LATE")).one()
        row.next_attempt_at = now + timedelta(hours=1)
        session.add(row)
    assert client.get("/readyz").status_code == 200
