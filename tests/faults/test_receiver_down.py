"""A receiver down for an hour, on a simulated clock: the other hosts' deliveries are not held up, the
dead host's are retried with growing backoff and dead-lettered (metric raised) once the attempts are
spent, and `spgw outbox retry` delivers them, in the order they were queued, once it is back."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
from click.testing import CliRunner
from sqlmodel import Session, select

from gateway.cli import main
from gateway.db import transaction
from gateway.delivery import worker
from gateway.delivery.signing import PACKET_ID_HEADER
from gateway.models import OutboxMessage
from gateway.organisations import upsert_organisation
from tests.gateway.test_metrics import sample

HOSTS = {"8VA01": "https://crm-a.example.org/hook", "8VB01": "https://crm-b.example.org/hook"}
DOWN = ("8VD01", "https://crm-down.example.org/hook")
PER_HOST = 6
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


class SimulatedClock:
    """The worker's `datetime`, with `now()` under the test's control."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: datetime) -> None:
        self.now = start
        clock = self

        class ClockDatetime(datetime):
            @classmethod
            def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
                return clock.now

        monkeypatch.setattr(worker, "datetime", ClockDatetime)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_receiver_down_for_an_hour_delays_no_one_else_then_is_retried_in_order(
    app, engine, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"delivery_max_attempts": 6, "delivery_backoff_base": 30.0})
    clock = SimulatedClock(monkeypatch, START)
    with transaction(engine) as session:
        for org_id, url in (*HOSTS.items(), DOWN):
            upsert_organisation(
                session,
                org_id=org_id,
                name=org_id,
                kind="vcse",
                delivery_mode="webhook",
                webhook_url=url,
                allow_insecure_endpoints=True,  # the receivers are on loopback
            )
        # the dead host's messages are queued first: the head of the line
        for n in range(PER_HOST):
            for org_id in (DOWN[0], *HOSTS):
                session.add(
                    OutboxMessage(
                        kind="recall", target=org_id, dedup_key=f"{org_id}-{n}", body="{}", next_attempt_at=START
                    )
                )
    dead_before = sample("spgw_deliveries_total", result="dead-lettered")
    attempts_on_dead: list[datetime] = []
    attempts_by_row: dict[str, list[datetime]] = {}

    def down(request: httpx.Request) -> httpx.Response:
        attempts_on_dead.append(clock.now)
        attempts_by_row.setdefault(request.headers[PACKET_ID_HEADER], []).append(clock.now)
        raise httpx.ConnectError("connection refused", request=request)

    with respx.mock(assert_all_called=False) as mock:
        for url in HOSTS.values():
            mock.post(url).mock(return_value=httpx.Response(200))
        dead_route = mock.post(DOWN[1]).mock(side_effect=down)

        worker.run_once(engine, settings)  # one pass at 09:00

        # every other host's messages went in the first pass, at 09:00, behind the dead host's
        assert _statuses(engine, HOSTS) == {"delivered"}
        assert len(attempts_on_dead) == 1  # the dead host was tried once in that pass, not once a message

        for _ in range(60):  # an hour, a pass a minute
            clock.advance(60)
            worker.run_once(engine, settings)

        assert _statuses(engine, [DOWN[0]]) == {"dead"}
        for times in attempts_by_row.values():  # backoff: the n-th retry waits at least half of base * 2^(n-1)
            assert len(times) == settings.delivery_max_attempts
            for n, (a, b) in enumerate(itertools.pairwise(times), start=1):
                assert (b - a).total_seconds() >= settings.delivery_backoff_base * 2 ** (n - 1) / 2
        assert max(attempts_on_dead) - START < timedelta(hours=1)  # dead-lettered inside the hour
        assert sample("spgw_deliveries_total", result="dead-lettered") == dead_before + PER_HOST

        # the host is back; the operator requeues its dead letters; they arrive in the order queued
        dead_route.mock(return_value=httpx.Response(200))
        requeued = CliRunner().invoke(main, ["outbox", "retry", "--data-dir", str(settings.data_dir)])
        assert requeued.exit_code == 0, requeued.output
        calls_before = len(dead_route.calls)
        worker.run_once(engine, settings)
        order = [call.request.headers[PACKET_ID_HEADER] for call in dead_route.calls[calls_before:]]
    assert order == [f"{DOWN[0]}-{n}" for n in range(PER_HOST)]
    assert _statuses(engine, [DOWN[0]]) == {"delivered"}


def _statuses(engine, targets) -> set[str]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        rows = session.exec(select(OutboxMessage).where(OutboxMessage.target.in_(list(targets))))  # type: ignore[attr-defined]
        return {row.status for row in rows}
