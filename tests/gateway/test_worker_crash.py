"""kill -9 of the delivery worker mid-delivery loses nothing (docs/design.md, non-functional targets:
"kill -9 at any point ... delivers no packet twice to a receiver that de-duplicates on packet id").

Twenty referral packets are queued for a webhook host whose CRM (the simulator) answers slowly;
`spgw worker` runs as a separate process on the same SQLite data folder and is killed with SIGKILL
after the CRM has seen some packets but not all. A second worker started on the same folder takes
over once the first one's lease on its claimed rows runs out (`--lease 2`, so the test waits about
two seconds rather than the production 60): every packet arrives at least once, the distinct packet
ids are exactly those queued, and every outbox row ends `delivered`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from sqlmodel import Session, select

from gateway.auth.principal import ROLE_SCOPES, Principal, Role
from gateway.context import RequestContext
from gateway.db import make_engine
from gateway.demo import seed_directory
from gateway.models import OutboxMessage
from gateway.organisations import upsert_organisation
from gateway.pipeline import referrals
from gateway.schema import init_db
from gateway.settings import Settings
from tests.gateway.crm_simulator import CrmSimulator
from tests.gateway.test_consent_flow import nhs_number, referral_message

SPGW = Path(sys.executable).with_name("spgw")
PACKETS = 20
CRM_DELAY = 0.3  # seconds per webhook request: slow enough to kill the worker mid-run
LEASE = 2.0
WAIT = 120.0


def poll(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def queue_referrals(settings: Settings, webhook_url: str) -> tuple[set[str], str]:
    """Registers 8VC01 as a webhook host and stores PACKETS consented referrals for it; returns the
    packet ids queued in the outbox and the host's webhook secret."""
    engine = make_engine(settings)
    try:
        init_db(engine)
        seed_directory(engine, settings)
        with Session(engine) as session:
            _, secret = upsert_organisation(
                session,
                org_id="8VC01",
                name="Lincoln Befriending Network",
                kind="vcse",
                delivery_mode="webhook",
                webhook_url=webhook_url,
                allow_insecure_endpoints=True,  # the CRM simulator listens on loopback over http://
            )
            session.commit()
        assert secret is not None
        gp = Principal("demo-gp", "A81001", Role.REFERRER, frozenset(ROLE_SCOPES[Role.REFERRER]))
        ctx = RequestContext(engine, settings, gp, None, None, "http://gateway.test")
        for n in range(PACKETS):
            with ctx.transaction():
                referrals.accept_message(
                    ctx, referral_message(nhs_number(5000 + 20 * n), "8VC01", consent_for=("8VC01",))
                )
        with Session(engine) as session:
            rows = session.exec(select(OutboxMessage)).all()
        assert len(rows) == PACKETS and {r.kind for r in rows} == {"referral"}
        return {r.dedup_key for r in rows}, secret
    finally:
        engine.dispose()


def outbox_statuses(settings: Settings) -> Counter[str]:
    engine = make_engine(settings)
    try:
        with Session(engine) as session:
            return Counter(r.status for r in session.exec(select(OutboxMessage)))
    finally:
        engine.dispose()


def start_worker(data_dir: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SPGW_DATA_DIR": str(data_dir)}
    env.pop("SPGW_DATABASE_URL", None)
    return subprocess.Popen(
        [str(SPGW), "worker", "--data-dir", str(data_dir), "--interval", "0.1", "--lease", str(LEASE)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)  # `spgw worker` stops on Ctrl-C
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.mark.skipif(not SPGW.exists(), reason="the spgw console script is not installed in this environment")
def test_kill_9_mid_delivery_loses_nothing_and_dedup_counts_each_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    log_path = tmp_path / "worker.log"
    with CrmSimulator(delay=CRM_DELAY) as crm, log_path.open("wb") as log:
        queued, crm.secret = queue_referrals(settings, crm.url)

        first = start_worker(settings.data_dir, log)
        try:
            poll(
                lambda: len(crm.received_ids()) >= 4 or first.poll() is not None,
                timeout=WAIT,
                what="the first worker to deliver some packets",
            )
            assert first.poll() is None, log_path.read_text()
            first.kill()  # SIGKILL: no clean-up, its leases and any in-flight request are abandoned
            first.wait(timeout=15)
        finally:
            stop(first)
        seen_before = set(crm.received_ids())
        assert 4 <= len(seen_before) < PACKETS, "the kill must land mid-run"
        statuses = outbox_statuses(settings)
        assert statuses["pending"] >= PACKETS - len(seen_before), statuses
        assert statuses["delivered"] <= len(seen_before), statuses

        second = start_worker(settings.data_dir, log)
        try:
            poll(
                lambda: outbox_statuses(settings) == Counter({"delivered": PACKETS}) or second.poll() is not None,
                timeout=WAIT,
                what="the second worker to deliver the rest",
            )
            assert second.poll() is None, log_path.read_text()
        finally:
            stop(second)

    received = crm.received_ids()
    counts = Counter(received)
    assert set(counts) == queued, "every queued packet arrived, and nothing else did"
    assert all(n >= 1 for n in counts.values())
    assert set(crm.distinct()) == queued and len(crm.distinct()) == PACKETS  # each counts once after de-duplication
    # Only what was in flight at the kill (or delivered but not yet recorded) may come twice.
    assert len(received) - PACKETS <= 2, counts
    assert crm.state.refused == 0
    assert outbox_statuses(settings) == Counter({"delivered": PACKETS})
