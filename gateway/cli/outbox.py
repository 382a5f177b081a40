"""The outbox and bulk loading: `spgw outbox list|retry`, `spgw import`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.cli.common import data_dir_option, open_engine


@click.group()
def outbox() -> None:
    """Inspect and requeue deliveries."""


@outbox.command("list")
@click.option("--status", type=click.Choice(["pending", "delivered", "dead", "withdrawn"]), default=None)
@click.option("--json", "as_json", is_flag=True)
@data_dir_option
def outbox_list(status: str | None, as_json: bool, data_dir: Path | None) -> None:
    from gateway.delivery.worker import outbox_rows

    engine, _ = open_engine(data_dir)
    rows = outbox_rows(engine, status)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['id']:>6} {r['kind']:<15} {r['target']:<8} {r['status']:<10} attempts={r['attempts']} "
            f"{r['last_error'] or ''}"
        )


@outbox.command("retry")
@click.argument("ids", nargs=-1, type=int)
@data_dir_option
def outbox_retry(ids: tuple[int, ...], data_dir: Path | None) -> None:
    """Requeue dead-lettered deliveries (all, or the ids given)."""
    from gateway.delivery.worker import retry

    engine, _ = open_engine(data_dir)
    click.echo(f"requeued {retry(engine, list(ids) or None)}")


@click.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "client_id", required=True, help="The referrer client the referrals come from")
@click.option("--batch", "batch_size", default=200, show_default=True, help="Referrals per transaction")
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write refused lines (line number + OperationOutcome) as NDJSON here",
)
@data_dir_option
def import_referrals(
    path: Path, client_id: str, batch_size: int, errors_path: Path | None, data_dir: Path | None
) -> None:
    """Back-load referrals from NDJSON (one message Bundle or ServiceRequest a line), with a progress bar."""
    import time

    from gateway.bulk import import_ndjson, write_errors
    from gateway.pipeline.hl7v2 import principal_for_client

    engine, settings = open_engine(data_dir)
    principal = principal_for_client(engine, client_id)
    if principal is None or not principal.may("ServiceRequest", "c"):
        raise click.ClickException(f"{client_id} is not an active client that may create referrals")
    started = time.perf_counter()
    report = import_ndjson(engine, settings, principal, path, batch_size=batch_size)
    elapsed = time.perf_counter() - started
    if errors_path is not None:
        write_errors(report, errors_path)
    rate = report.stored / elapsed if elapsed else 0.0
    click.echo(f"stored {report.stored}, refused {report.refused} in {elapsed:.1f} s ({rate:.0f} referrals/s)")
    if report.refused and errors_path is None:
        click.echo("refused lines: run again with --errors FILE to see why", err=True)
