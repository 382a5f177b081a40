"""Running the gateway: `spgw serve`, `demo`, `mllp` and `worker`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from gateway.cli.common import configure_logging, data_dir_option, is_loopback, load_settings, open_engine
from gateway.settings import Settings

DEFAULT_MLLP_PORT = 2575  # the port IANA registers for HL7 over MLLP
DEMO_MLLP_SOURCES = "DEMOSENDER^DEMO=demo-gp"


def start_mllp(engine, settings: Settings, host: str, port: int) -> int:  # type: ignore[no-untyped-def]
    """Starts the MLLP listener in a background thread, sharing the HTTP route's handler; returns its port."""
    from starlette.concurrency import run_in_threadpool

    from gateway.mllp import MllpServer, run_in_thread
    from gateway.pipeline.hl7v2 import handle_message, parse_sources, principal_for_sender
    from mappings.v2.parse import sniff_header

    sources = parse_sources(settings.mllp_allowed_sources)

    async def handler(message: bytes, peer: str) -> bytes:
        try:
            fields, encoding = sniff_header(message)
            sender = (fields.get(3, "").split(encoding.component)[0], fields.get(4, "").split(encoding.component)[0])
        except Exception:  # an unreadable header: no sender, so the handler answers AR
            sender = None
        principal = await run_in_threadpool(principal_for_sender, engine, sources, sender)
        return await run_in_threadpool(
            handle_message, engine, settings, principal, message, source_ip=peer.rsplit(":", 1)[0]
        )

    try:
        bound, _ = run_in_thread(MllpServer(handler, host, port))
    except OSError:
        bound, _ = run_in_thread(MllpServer(handler, host, 0))  # the preferred port is taken
    return bound


def _serve(settings: Settings, host: str, port: int, *, demo: bool, mllp_port: int | None = None) -> None:
    import uvicorn

    from gateway.app import create_app

    if is_loopback(host):
        # Authlib refuses http:// token endpoints unless told otherwise; only on loopback.
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    app = create_app(settings)
    engine = app.state.spgw.engine
    base = f"http://{host}:{port}"
    if demo:
        from gateway.demo import key_path, seed

        clients = seed(engine, settings)
        click.echo(f"sp-gateway demo at {base}/fhir (data folder {settings.data_dir})")
        click.echo("Demo clients (private keys under the data folder):")
        for c in clients:
            click.echo(f"  {c.client_id:<12} {c.role:<11} {c.organisation:<7} {key_path(settings, c.client_id)}")
        from gateway.delivery.worker import WorkerThread

        WorkerThread(engine, settings).start()
        click.echo("Delivery worker running in the background.")
        bound = start_mllp(engine, settings, host, mllp_port if mllp_port is not None else DEFAULT_MLLP_PORT)
        click.echo(f"MLLP listener on {host} port {bound} (demo sender MSH-3 DEMOSENDER, MSH-4 DEMO)")
        spgw = sys.argv[0] if Path(sys.argv[0]).name == "spgw" else "spgw"  # the command as it was run
        from gateway.console.demo import seed_console_users

        for login in seed_console_users(engine, settings):
            click.echo(f"Console: {base}/console/  sign in as {login.username} ({login.role}, {login.organisation})")
            click.echo(
                f"  password {login.password}; security code: {spgw} users code {login.username}"
                f" --data-dir {settings.data_dir}"
            )
            click.echo(f"  (or add to an authenticator app: {login.provisioning_uri})")
        click.echo(f"Try:  TOKEN=$({spgw} token demo-gp --url {base} --data-dir {settings.data_dir})")
        click.echo(f'      curl -H "Authorization: Bearer $TOKEN" {base}/fhir/ServiceRequest')
    else:
        click.echo(f"sp-gateway at {base}/fhir (data folder {settings.data_dir})")
    _start_checkpoints(engine, settings, first_now=demo)
    sys.stdout.flush()
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None, lifespan="on")


def _start_checkpoints(engine, settings: Settings, *, first_now: bool) -> None:  # type: ignore[no-untyped-def]
    """Automatic checkpoints to the witness every SPGW_CHECKPOINT_INTERVAL_MINUTES (the demo signs one at once)."""
    from audit.witness import WitnessError
    from gateway.integrity import CheckpointThread, publish_due_checkpoint

    if first_now:
        try:
            publish_due_checkpoint(engine, settings)
        except WitnessError as exc:
            click.echo(f"checkpoint not published: {exc}", err=True)
    if settings.checkpoint_interval_minutes > 0:
        CheckpointThread(engine, settings).start()
        click.echo(
            f"Audit checkpoints every {settings.checkpoint_interval_minutes} minutes to {settings.witness_folder}"
        )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@data_dir_option
def serve(host: str, port: int, data_dir: Path | None) -> None:
    """Run the gateway (no demo data)."""
    configure_logging()
    _serve(load_settings(data_dir), host, port, demo=False)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--mllp-port", default=None, type=int, help=f"MLLP listener port (default {2575}, or a free one)")
@data_dir_option
def demo(host: str, port: int, mllp_port: int | None, data_dir: Path | None) -> None:
    """Run the gateway with demo organisations, client keys, sample referrals, the worker and MLLP."""
    configure_logging()
    os.environ.setdefault("SPGW_MLLP_ALLOWED_SOURCES", DEMO_MLLP_SOURCES)
    _serve(load_settings(data_dir), host, port, demo=True, mllp_port=mllp_port)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback by default: expose deliberately")
@click.option("--port", default=DEFAULT_MLLP_PORT, show_default=True, type=int)
@data_dir_option
def mllp(host: str, port: int, data_dir: Path | None) -> None:
    """Run the HL7 v2 MLLP listener (senders mapped by SPGW_MLLP_ALLOWED_SOURCES='APP^FAC=client_id,...')."""
    import time

    configure_logging()
    engine, settings = open_engine(data_dir)
    bound = start_mllp(engine, settings, host, port)
    click.echo(f"MLLP listener on {host} port {bound}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return


@click.command()
@click.option("--once", is_flag=True, help="Deliver what is due, then exit")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls")
@click.option(
    "--lease",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a claimed delivery stays reserved; after a crash, another worker retakes it when this expires",
)
@data_dir_option
def worker(once: bool, interval: float, lease: float, data_dir: Path | None) -> None:
    """Deliver packets, notices and write-backs from the outbox (retries, backoff, dead letters)."""
    from datetime import timedelta

    from gateway.delivery.worker import WorkerThread, run_once

    configure_logging()
    engine, settings = open_engine(data_dir)
    if once:
        click.echo(f"delivered {run_once(engine, settings, lease=timedelta(seconds=lease))}")
        return
    thread = WorkerThread(engine, settings, interval, timedelta(seconds=lease))
    click.echo("delivery worker running (Ctrl-C to stop)")
    thread.start()
    try:
        while thread.is_alive():
            thread.join(1)
    except KeyboardInterrupt:
        thread.stop()
