"""Prometheus metrics: counters and histograms each process updates, and gauges read from the database
when scraped. Labels are route templates, statuses, FHIR issue codes, outcomes and organisation codes
(delivery targets): never a patient identifier, a concrete path or a free-text message.

With several worker processes, `PROMETHEUS_MULTIPROC_DIR` must be set before this module is imported
(`spgw serve` does it): each process then writes its samples to files there, and the exposition
server (`serve_metrics`, run by the parent process on its own port) adds them up.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

log = logging.getLogger("spgw.metrics")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter("spgw_http_requests", "HTTP requests answered, by route template and status", ["route", "status"])
LATENCY = Histogram(
    "spgw_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REFERRALS = Counter(
    "spgw_referral_messages",
    "Referral messages ($process-message, HL7 v2) accepted or refused; reason is the FHIR issue code",
    ["outcome", "reason"],
)
DELIVERIES = Counter(
    "spgw_deliveries", "Outbox delivery attempts by result (succeeded, retried, dead-lettered)", ["result"]
)
TOKEN_REFUSALS = Counter("spgw_token_refusals", "Requests refused with 401, by route template", ["route"])

# The routes whose requests are referral messages (route templates, as the app declares them).
REFERRAL_ROUTES = frozenset({"/fhir/$process-message", "/hl7v2"})


def observe_request(route: str, method: str, status: int, seconds: float, outcome_code: str | None) -> None:
    """Records one answered HTTP request (called by the access-log middleware)."""
    REQUESTS.labels(route, str(status)).inc()
    LATENCY.labels(route).observe(seconds)
    if status == 401:
        TOKEN_REFUSALS.labels(route).inc()
    if route in REFERRAL_ROUTES and method == "POST":
        if status < 300:
            REFERRALS.labels("accepted", "").inc()
        else:
            REFERRALS.labels("refused", outcome_code or str(status)).inc()


class DatabaseCollector(Collector):
    """Gauges computed at scrape time from the shared database, so every process reports the same truth:
    outbox depth and oldest pending age per target, audit log size and age of the last checkpoint."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self) -> Iterator[Any]:
        from audit.store import AuditCheckpointRecord, AuditHead
        from gateway.models import OutboxMessage

        depth = GaugeMetricFamily(
            "spgw_outbox_depth", "Outbox messages by target and status", labels=["target", "status"]
        )
        oldest = GaugeMetricFamily(
            "spgw_outbox_oldest_pending_age_seconds", "Age of the oldest pending message per target", labels=["target"]
        )
        audit_size = GaugeMetricFamily("spgw_audit_log_size", "Entries in the audit log")
        checkpoint_age = GaugeMetricFamily("spgw_audit_last_checkpoint_age_seconds", "Age of the newest checkpoint")
        up = GaugeMetricFamily("spgw_database_up", "1 when the database answered this scrape")
        now = datetime.now(UTC)
        try:
            with self.engine.connect() as conn:
                counts = conn.execute(
                    select(OutboxMessage.target, OutboxMessage.status, func.count()).group_by(
                        OutboxMessage.target, OutboxMessage.status
                    )
                ).all()
                firsts = conn.execute(
                    select(OutboxMessage.target, func.min(OutboxMessage.created))
                    .where(OutboxMessage.status == "pending")
                    .group_by(OutboxMessage.target)
                ).all()
                size = conn.execute(select(AuditHead.size)).scalar() or 0
                last = conn.execute(select(func.max(AuditCheckpointRecord.created))).scalar()
        except Exception as exc:  # the scrape still answers: the database is down, and says so
            log.warning("metrics: the database did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for target, status, count in counts:
            depth.add_metric([target, status], count)
        for target, created in firsts:
            oldest.add_metric([target], max(0.0, (now - _utc(created)).total_seconds()))
        audit_size.add_metric([], size)
        if last is not None:
            checkpoint_age.add_metric([], max(0.0, (now - _utc(last)).total_seconds()))
        yield from (up, depth, oldest, audit_size, checkpoint_age)


class _ThisProcess(Collector):
    """The default registry (this process's metrics) seen through another registry."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def prepare_multiprocess_dir(path: Path) -> None:
    """Empties the folder the worker processes write their samples to (stale files from an earlier run
    would be added in) and points this process and its children at it."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)


def registry_for(engine: Engine | None) -> CollectorRegistry:
    """The registry to expose: every process's samples in multiprocess mode, else this process's."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_ThisProcess())
    if engine is not None:
        registry.register(DatabaseCollector(engine))
    return registry


def serve_metrics(host: str, port: int, engine: Engine | None) -> tuple[Any, threading.Thread]:
    """Starts the exposition server (`GET /metrics`) on its own port in a background thread."""
    return start_http_server(port, addr=host, registry=registry_for(engine))
