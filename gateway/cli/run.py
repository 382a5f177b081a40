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


def start_mllp(engine, settings: Settings, host: str, port: int, tls=None) -> int:  # type: ignore[no-untyped-def]
    """Starts the MLLP listener in a background thread, sharing the HTTP route's handler; returns its port.
    `tls` is an ssl.SSLContext (spgw mllp --tls-cert/--tls-key[/--tls-client-ca]) or None."""
    from functools import partial

    from starlette.concurrency import run_in_threadpool

    from gateway.mllp import MllpServer, Peer, parse_networks, run_in_thread
    from gateway.pipeline.hl7v2 import audit_mllp_refusal, handle_message, parse_sources, principal_for_connection
    from mappings.v2.parse import sniff_header

    sources = parse_sources(settings.mllp_allowed_sources)
    certificates = parse_certificate_clients(settings.mllp_tls_clients)

    async def handler(message: bytes, peer: str) -> bytes:
        try:
            fields, encoding = sniff_header(message)
            sender = (fields.get(3, "").split(encoding.component)[0], fields.get(4, "").split(encoding.component)[0])
        except Exception:  # an unreadable header: no sender, so the handler answers AR
            sender = None
        cn = peer.certificate_cn if isinstance(peer, Peer) else None
        principal = await run_in_threadpool(principal_for_connection, engine, sources, certificates, sender, cn)
        return await run_in_threadpool(
            handle_message, engine, settings, principal, message, source_ip=peer.rsplit(":", 1)[0]
        )

    async def on_refusal(peer: str, reason: str) -> None:
        await run_in_threadpool(audit_mllp_refusal, engine, peer.rsplit(":", 1)[0], reason)

    server = partial(
        MllpServer,
        handler,
        host,
        message_deadline=settings.mllp_message_deadline,
        max_connections=settings.mllp_max_connections,
        allowed_sources=parse_networks(settings.mllp_allowed_ips) or None,
        ssl_context=tls,
        on_refusal=on_refusal,
    )
    try:
        bound, _ = run_in_thread(server(port))
    except OSError:
        bound, _ = run_in_thread(server(0))  # the preferred port is taken
    return bound


def parse_certificate_clients(spec: str) -> dict[str, str]:
    """Returns {certificate CN: client_id} from 'CN=client_id,CN2=client2' (SPGW_MLLP_TLS_CLIENTS)."""
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        cn, _, client_id = item.rpartition("=")
        if not cn or not client_id:
            raise click.ClickException(f"SPGW_MLLP_TLS_CLIENTS entry '{item}' is not of the form CN=client_id")
        out[cn.strip()] = client_id.strip()
    return out


def public_base(settings: Settings, host: str, port: int) -> Settings:
    """Returns settings whose public base URL (the token audience and issuer) is fixed before serving.

    Never the request's Host header: a caller would choose the `aud` its assertion must name and the `iss`
    of its token. Unset, it is the loopback address served; anywhere else the operator must set it."""
    if settings.public_base_url:
        return settings
    if not is_loopback(host):
        raise click.ClickException(
            f"Refusing to serve on {host} without SPGW_PUBLIC_BASE_URL: set it to the https:// URL clients use "
            "(the token audience and issuer), or bind to a loopback address."
        )
    shown = f"[{host}]" if ":" in host else host
    return settings.model_copy(update={"public_base_url": f"http://{shown}:{port}"})


def _serve(settings: Settings, host: str, port: int, *, demo: bool, mllp_port: int | None = None) -> None:
    import uvicorn

    from gateway.app import create_app

    settings = public_base(settings, host, port)
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
        if settings.allow_insecure_endpoints:
            click.echo(
                "SPGW_ALLOW_INSECURE_ENDPOINTS=true (demo): webhook and FHIR endpoints may be http:// and loopback; "
                "never set it in production."
            )
        spgw = sys.argv[0] if Path(sys.argv[0]).name == "spgw" else "spgw"  # the command as it was run
        click.echo(f"Try:  TOKEN=$({spgw} token demo-gp --url {base} --data-dir {settings.data_dir})")
        click.echo(f'      curl -H "Authorization: Bearer $TOKEN" {base}/fhir/ServiceRequest')
    else:
        click.echo(f"sp-gateway at {base}/fhir (data folder {settings.data_dir})")
    sys.stdout.flush()
    # Forwarded headers (X-Forwarded-For/-Proto) are believed only from SPGW_TRUSTED_PROXIES; otherwise the
    # audited source address is the socket's peer, whatever a caller writes in a header.
    trusted = settings.trusted_proxies.strip()
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        lifespan="on",
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
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
    # The demo's receivers live on loopback (a CRM or GP simulator on this machine); said on start-up.
    os.environ.setdefault("SPGW_ALLOW_INSECURE_ENDPOINTS", "true")
    _serve(load_settings(data_dir), host, port, demo=True, mllp_port=mllp_port)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback by default: expose deliberately")
@click.option("--port", default=DEFAULT_MLLP_PORT, show_default=True, type=int)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None, help="Server certificate (PEM)")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None, help="Its private key (PEM)")
@click.option(
    "--tls-client-ca",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Require client certificates signed by this CA (PEM); map them with SPGW_MLLP_TLS_CLIENTS='CN=client_id'",
)
@data_dir_option
def mllp(
    host: str, port: int, tls_cert: str | None, tls_key: str | None, tls_client_ca: str | None, data_dir: Path | None
) -> None:
    """Run the HL7 v2 MLLP listener (senders mapped by SPGW_MLLP_ALLOWED_SOURCES='APP^FAC=client_id,...';
    connections limited by SPGW_MLLP_ALLOWED_IPS; TLS with --tls-cert/--tls-key, see docs/hl7v2.md)."""
    import time

    from gateway.mllp import server_context

    configure_logging()
    if bool(tls_cert) != bool(tls_key):
        raise click.ClickException("--tls-cert and --tls-key go together")
    if tls_client_ca and not tls_cert:
        raise click.ClickException("--tls-client-ca needs --tls-cert and --tls-key")
    engine, settings = open_engine(data_dir)
    tls = server_context(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    if not is_loopback(host) and tls is None and not settings.mllp_allowed_ips:
        click.echo(
            f"warning: MLLP on {host} without TLS or SPGW_MLLP_ALLOWED_IPS: anyone who can reach the port "
            "can send as a mapped MSH-3/MSH-4 sender",
            err=True,
        )
    bound = start_mllp(engine, settings, host, port, tls)
    click.echo(f"MLLP listener on {host} port {bound}" + (" (TLS)" if tls else ""))
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
