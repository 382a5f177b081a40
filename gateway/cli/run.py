"""Running the gateway: `spgw serve`, `demo`, `mllp` and `worker`."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import click

from gateway.cli.common import configure_logging, data_dir_option, is_loopback, load_settings
from gateway.settings import Settings

DEFAULT_MLLP_PORT = 2575  # the port IANA registers for HL7 over MLLP
DEMO_MLLP_SOURCES = "DEMOSENDER^DEMO=demo-gp"


def mllp_handler(engine, settings: Settings):  # type: ignore[no-untyped-def]
    """Returns the MLLP listener's message handler: the client is named by the TLS client certificate when
    there is one (SPGW_MLLP_TLS_CLIENTS), else by the configured source (MSH-3^MSH-4), and the message goes
    through the same pipeline as the HTTP route."""
    from starlette.concurrency import run_in_threadpool

    from gateway.mllp import Peer
    from gateway.pipeline.hl7v2 import handle_message, parse_sources, principal_for_connection
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

    return handler


def start_mllp(engine, settings: Settings, host: str, port: int, tls=None) -> int:  # type: ignore[no-untyped-def]
    """Starts the MLLP listener in a background thread, sharing the HTTP route's handler; returns its port.
    `tls` is an ssl.SSLContext (spgw mllp --tls-cert/--tls-key[/--tls-client-ca]) or None."""
    from functools import partial

    from starlette.concurrency import run_in_threadpool

    from gateway.mllp import MllpServer, parse_networks, run_in_thread
    from gateway.pipeline.hl7v2 import audit_mllp_refusal

    async def on_refusal(peer: str, reason: str) -> None:
        await run_in_threadpool(audit_mllp_refusal, engine, peer.rsplit(":", 1)[0], reason)

    server = partial(
        MllpServer,
        mllp_handler(engine, settings),
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


def port_is_free(host: str, port: int) -> bool:
    """True when `host:port` can be bound now, with the SO_REUSEADDR uvicorn itself uses (so a socket
    left in TIME_WAIT by a previous run does not count as taken)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


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


def require_free_ports(host: str, *ports: int | None) -> None:
    """Stops before anything starts (banner, seed, worker, MLLP) when a port is taken: one line, exit 1."""
    for port in ports:
        if port is not None and not port_is_free(host, port):
            raise click.ClickException(
                f"port {port} on {host} is already in use (another `spgw demo` or `make run`?); "
                f"stop it, or choose another port: --port N, or make run PORT=N"
            )


def prepare(settings: Settings) -> None:
    """What `spgw migrate` does: the schema to the newest migration, then the gateway's keys if missing."""
    from gateway.auth.keys import ensure_keys
    from gateway.db import make_engine
    from gateway.schema import migrate

    engine = make_engine(settings)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    ensure_keys(settings.keys_dir)


def startable_engine(settings: Settings, *, keys: bool):  # type: ignore[no-untyped-def]
    """The engine for a process about to start; refuses (exit 1, naming `spgw migrate`) when the schema is
    behind or, for processes that sign tokens, the keys are missing. Nothing is changed here."""
    from gateway.auth.keys import KeysMissing, require_keys
    from gateway.db import make_engine
    from gateway.schema import SchemaNotCurrent, require_current

    engine = make_engine(settings)
    try:
        require_current(engine)
        if keys:
            require_keys(settings.keys_dir)
    except (SchemaNotCurrent, KeysMissing) as exc:
        engine.dispose()
        raise click.ClickException(f"refusing to start: {exc}") from None
    except Exception as exc:  # the database is unreachable: say so, without a trace
        engine.dispose()
        raise click.ClickException(f"refusing to start: the database did not answer ({type(exc).__name__})") from None
    return engine


def _start_metrics(host: str, port: int | None, engine) -> None:  # type: ignore[no-untyped-def]
    if port is None:
        return
    from gateway.metrics import serve_metrics

    serve_metrics(host, port, engine)
    click.echo(f"Prometheus metrics at http://{host}:{port}/metrics")


def _serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    demo: bool,
    mllp_port: int | None = None,
    workers: int = 1,
    metrics: tuple[str, int | None] = ("127.0.0.1", None),
) -> None:
    import uvicorn

    settings = public_base(settings, host, port)
    if is_loopback(host):
        # Authlib refuses http:// token endpoints unless told otherwise; only on loopback.
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    base = f"http://{host}:{port}"
    if workers > 1:
        # Each worker process imports gateway.asgi, which reads its settings from the environment:
        # hand the data folder over that way, and give the workers a folder for their metric samples.
        import tempfile

        from gateway.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

        os.environ["SPGW_DATA_DIR"] = str(settings.data_dir)
        if settings.database_url:
            os.environ["SPGW_DATABASE_URL"] = settings.database_url
        os.environ["SPGW_PUBLIC_BASE_URL"] = settings.public_base_url or ""  # fixed above, never the Host header
        prepare_multiprocess_dir(Path(os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="spgw-metrics-")))
        engine = startable_engine(settings, keys=True)
        _start_metrics(metrics[0], metrics[1], engine)
        click.echo(f"sp-gateway at {base}/fhir with {workers} worker processes (data folder {settings.data_dir})")
        sys.stdout.flush()
        uvicorn.run(
            "gateway.asgi:app",
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_config=None,
            lifespan="on",
            proxy_headers=bool(settings.trusted_proxies.strip()),
            forwarded_allow_ips=settings.trusted_proxies.strip() or None,
        )
        return

    from gateway.app import create_app

    engine = startable_engine(settings, keys=True)
    app = create_app(settings, engine)
    _start_metrics(metrics[0], metrics[1], engine)
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


metrics_port_option = click.option(
    "--metrics-port", type=click.IntRange(1, 65535), default=None, help="Serve Prometheus /metrics on this port"
)
metrics_host_option = click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port (keep it private)"
)


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
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Worker processes (uvicorn; each one loads gateway.asgi:app with settings from the environment)",
)
@metrics_port_option
@metrics_host_option
@data_dir_option
def serve(
    host: str, port: int, workers: int, metrics_port: int | None, metrics_host: str, data_dir: Path | None
) -> None:
    """Run the gateway (no demo data). Run `spgw migrate` first: serve never changes the schema or makes keys."""
    require_free_ports(host, port)
    require_free_ports(metrics_host, metrics_port)
    configure_logging()
    _serve(load_settings(data_dir), host, port, demo=False, workers=workers, metrics=(metrics_host, metrics_port))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--mllp-port", default=None, type=int, help=f"MLLP listener port (default {2575}, or a free one)")
@data_dir_option
def demo(host: str, port: int, mllp_port: int | None, data_dir: Path | None) -> None:
    """Migrate, make keys, then run the gateway with demo organisations, client keys, sample referrals,
    the worker and MLLP."""
    # An explicit --mllp-port must be free too; the default one falls back to a free port (start_mllp).
    require_free_ports(host, port, mllp_port)
    configure_logging()
    os.environ.setdefault("SPGW_MLLP_ALLOWED_SOURCES", DEMO_MLLP_SOURCES)
    os.environ.setdefault("SPGW_SANDBOX", "true")  # CRM vendors build against synthetic referrals
    # The demo's receivers live on loopback (a CRM or GP simulator on this machine); said on start-up.
    os.environ.setdefault("SPGW_ALLOW_INSECURE_ENDPOINTS", "true")
    settings = load_settings(data_dir)
    prepare(settings)
    _serve(settings, host, port, demo=True, mllp_port=mllp_port)


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
    settings = load_settings(data_dir)
    engine = startable_engine(settings, keys=False)
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
@click.option(
    "--concurrency",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Delivery loops in this process (each claims its own batch; a slow receiver holds up one loop only)",
)
@metrics_port_option
@metrics_host_option
@data_dir_option
def worker(
    once: bool,
    interval: float,
    lease: float,
    concurrency: int,
    metrics_port: int | None,
    metrics_host: str,
    data_dir: Path | None,
) -> None:
    """Deliver packets, notices and write-backs from the outbox (retries, backoff, dead letters)."""
    from datetime import timedelta

    from gateway.delivery.worker import WorkerThread, run_once

    configure_logging()
    settings = load_settings(data_dir)
    engine = startable_engine(settings, keys=False)
    if once:
        click.echo(f"delivered {run_once(engine, settings, lease=timedelta(seconds=lease))}")
        return
    _start_metrics(metrics_host, metrics_port, engine)
    threads = [WorkerThread(engine, settings, interval, timedelta(seconds=lease)) for _ in range(concurrency)]
    click.echo(f"delivery worker running with {concurrency} loop(s) (Ctrl-C to stop)")
    for thread in threads:
        thread.start()
    try:
        while all(thread.is_alive() for thread in threads):
            threads[0].join(1)
    except KeyboardInterrupt:
        for thread in threads:
            thread.stop()
