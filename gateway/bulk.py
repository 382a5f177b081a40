"""Bulk back-load of referrals from NDJSON (one message Bundle or ServiceRequest per line).

Validation with fhir.resources is the costly part (about 1 ms a message), so it runs in a pool of
worker processes while this process stores the results through the same pipeline as the API, in
batches: one transaction per batch and a savepoint per referral, so a refused line is reported
and skipped without losing its neighbours. Refused lines go to an NDJSON error report with their
line number and OperationOutcome.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine
from tqdm import tqdm

from gateway.auth.principal import Principal
from gateway.context import RequestContext
from gateway.pipeline import referrals
from gateway.settings import Settings
from gateway.storage.repository import discard_pending, flush_pending
from profiles.outcomes import FhirError
from profiles.structure import check_structure, parse_json


@dataclass
class ImportReport:
    stored: int = 0
    refused: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


def _validate(item: tuple[int, bytes]) -> tuple[int, dict[str, Any] | None, dict[str, Any] | None]:
    """Runs in a worker process: returns (line, resource, None) or (line, None, OperationOutcome)."""
    line, raw = item
    try:
        resource = parse_json(raw)
        check_structure(resource, {"Bundle", "ServiceRequest"})
    except FhirError as error:
        return line, None, error.outcome()
    return line, resource, None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                yield number, raw


def _store(ctx: RequestContext, resource: dict[str, Any]) -> None:
    if resource["resourceType"] == "Bundle":
        referrals.accept_message(ctx, resource)
    else:
        referrals.accept_service_request(ctx, resource)


def _store_batch(ctx: RequestContext, batch: list[tuple[int, dict[str, Any]]], report: ImportReport) -> None:
    with ctx.transaction() as session:
        for line, resource in batch:
            savepoint = session.begin_nested()
            try:
                _store(ctx, resource)
                flush_pending(session)  # held index rows belong inside this referral's savepoint
                savepoint.commit()
                report.stored += 1
            except FhirError as error:
                savepoint.rollback()
                discard_pending(session)
                report.refused += 1
                report.errors.append({"line": line, "status": error.status, "outcome": error.outcome()})


def import_ndjson(
    engine: Engine,
    settings: Settings,
    principal: Principal,
    path: Path,
    *,
    batch_size: int = 200,
    processes: int | None = None,
    progress: bool = True,
) -> ImportReport:
    """Returns what was stored and refused after loading every line of `path` as `principal`."""
    report = ImportReport()
    ctx = RequestContext(engine, settings, principal, None, None, settings.public_base_url or "")
    total = sum(1 for _ in _lines(path))
    workers = processes or max(1, (multiprocessing.cpu_count() or 2))
    batch: list[tuple[int, dict[str, Any]]] = []
    context = multiprocessing.get_context("fork")  # workers only validate; they inherit the imports
    with context.Pool(workers) as pool, tqdm(total=total, unit="referral", disable=not progress) as bar:
        results: Iterable[tuple[int, dict[str, Any] | None, dict[str, Any] | None]] = pool.imap(
            _validate, _lines(path), chunksize=32
        )
        for line, resource, outcome in results:
            if resource is None:
                report.refused += 1
                report.errors.append({"line": line, "status": 400, "outcome": outcome})
                bar.update(1)
                continue
            batch.append((line, resource))
            if len(batch) >= batch_size:
                _store_batch(ctx, batch, report)
                bar.update(len(batch))
                batch = []
        if batch:
            _store_batch(ctx, batch, report)
            bar.update(len(batch))
    return report


def write_errors(report: ImportReport, path: Path) -> None:
    with path.open("wb") as handle:
        for error in report.errors:
            handle.write(orjson.dumps(error) + b"\n")
