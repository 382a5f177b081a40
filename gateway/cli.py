"""The `spgw` command line: serve, demo, token, clients, and the operator commands."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
from pathlib import Path

import click

from gateway.settings import Settings

DEFAULT_MLLP_PORT = 2575  # the port IANA registers for HL7 over MLLP
DEMO_MLLP_SOURCES = "DEMOSENDER^DEMO=demo-gp"

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data folder (SQLite database, keys); default $SPGW_DATA_DIR or ./data",
)


def load_settings(data_dir: Path | None) -> Settings:
    if data_dir is not None:
        os.environ["SPGW_DATA_DIR"] = str(data_dir)
    return Settings()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class TraceOnlyFormatter(logging.Formatter):
    """Formats a logged exception as its types and frames, never its message: messages can quote request
    content, and uvicorn logs every unhandled exception again after the gateway has answered 500."""

    def formatException(self, ei) -> str:  # type: ignore[no-untyped-def]
        from gateway.errors import trace_without_messages

        return trace_without_messages(ei[1]) if ei[1] is not None else ""


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stdout)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(TraceOnlyFormatter(LOG_FORMAT))


@click.group()
def main() -> None:
    """sp-gateway: the social prescribing interoperability gateway."""


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

    if _is_loopback(host):
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
        click.echo(f"Try:  TOKEN=$({spgw} token demo-gp --url {base} --data-dir {settings.data_dir})")
        click.echo(f'      curl -H "Authorization: Bearer $TOKEN" {base}/fhir/ServiceRequest')
    else:
        click.echo(f"sp-gateway at {base}/fhir (data folder {settings.data_dir})")
    sys.stdout.flush()
    uvicorn.run(app, host=host, port=port, access_log=False, log_config=None, lifespan="on")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@data_dir_option
def serve(host: str, port: int, data_dir: Path | None) -> None:
    """Run the gateway (no demo data)."""
    configure_logging()
    _serve(load_settings(data_dir), host, port, demo=False)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--mllp-port", default=None, type=int, help=f"MLLP listener port (default {2575}, or a free one)")
@data_dir_option
def demo(host: str, port: int, mllp_port: int | None, data_dir: Path | None) -> None:
    """Run the gateway with demo organisations, client keys, sample referrals, the worker and MLLP."""
    configure_logging()
    os.environ.setdefault("SPGW_MLLP_ALLOWED_SOURCES", DEMO_MLLP_SOURCES)
    _serve(load_settings(data_dir), host, port, demo=True, mllp_port=mllp_port)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback by default: expose deliberately")
@click.option("--port", default=DEFAULT_MLLP_PORT, show_default=True, type=int)
@data_dir_option
def mllp(host: str, port: int, data_dir: Path | None) -> None:
    """Run the HL7 v2 MLLP listener (senders mapped by SPGW_MLLP_ALLOWED_SOURCES='APP^FAC=client_id,...')."""
    import time

    configure_logging()
    engine, settings = _engine(data_dir)
    bound = start_mllp(engine, settings, host, port)
    click.echo(f"MLLP listener on {host} port {bound}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return


@main.command()
@click.argument("client_id")
@click.option("--url", "base_url", required=True, help="The gateway's base URL, e.g. http://127.0.0.1:8080")
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The client's private JWK file (default: the demo key in the data folder)",
)
@click.option("--scope", default=None, help="Ask for fewer scopes than the client has")
@data_dir_option
def token(client_id: str, base_url: str, key_file: Path | None, scope: str | None, data_dir: Path | None) -> None:
    """Get an access token with a signed client assertion (RFC 7523) and print it."""
    from gateway.auth.client_side import TokenError, fetch_token
    from gateway.demo import key_path

    settings = load_settings(data_dir)
    path = key_file or key_path(settings, client_id)
    if not path.exists():
        raise click.ClickException(f"no private key for {client_id} at {path} (use --key)")
    try:
        click.echo(fetch_token(base_url=base_url.rstrip("/"), client_id=client_id, private_key_path=path, scope=scope))
    except TokenError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def clients() -> None:
    """Manage API clients (each bound to one organisation and one role)."""


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list")
@data_dir_option
def clients_list(as_json: bool, data_dir: Path | None) -> None:
    from sqlmodel import Session

    from gateway.auth.clients import list_clients
    from gateway.db import make_engine
    from gateway.schema import init_db

    engine = make_engine(load_settings(data_dir))
    init_db(engine)
    with Session(engine) as session:
        rows = list_clients(session)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = "active" if r["active"] else "disabled"
        click.echo(f"{r['client_id']:<20} {r['role']:<11} {r['organisation']:<8} {state:<8} {' '.join(r['scopes'])}")


@clients.command("add")
@click.argument("client_id")
@click.option("--organisation", required=True)
@click.option("--role", required=True, type=click.Choice(["referrer", "vcse", "ig-officer", "admin"]))
@click.option("--scope", "scopes", multiple=True, help="Scopes (default: the role's ceiling)")
@click.option(
    "--generate-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Generate a key pair; write the private JWK here (0600)",
)
@click.option(
    "--jwks",
    "jwks_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The client's public JWKS file",
)
@data_dir_option
def clients_add(
    client_id: str,
    organisation: str,
    role: str,
    scopes: tuple[str, ...],
    generate_key: Path | None,
    jwks_file: Path | None,
    data_dir: Path | None,
) -> None:
    """Register a client with its public keys, or generate its key pair."""
    from gateway.auth.clients import add_client
    from gateway.auth.principal import Role

    jwks = json.loads(jwks_file.read_text()) if jwks_file else None
    with _session(data_dir) as session:
        try:
            client = add_client(
                session,
                ig_reads_clinical=load_settings(data_dir).ig_reads_clinical,
                client_id=client_id,
                organisation_id=organisation,
                role=Role(role),
                scopes=scopes or None,
                public_jwks=jwks,
                private_key_out=generate_key,
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        _audit_change(
            session, "admin-add-client", f"client {client.client_id} added ({client.role} for {client.organisation_id})"
        )
        session.commit()
        click.echo(f"added {client.client_id} ({client.role} for {client.organisation_id})")


@clients.command("disable")
@click.argument("client_id")
@data_dir_option
def clients_disable(client_id: str, data_dir: Path | None) -> None:
    """Disable a client: its tokens stop working at once."""
    from gateway.auth.clients import disable_client

    with _session(data_dir) as session:
        try:
            disable_client(session, client_id)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        _audit_change(session, "admin-disable-client", f"client {client_id} disabled")
        session.commit()
    click.echo(f"disabled {client_id}")


@clients.command("rotate-key")
@click.argument("client_id")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--retire-old", is_flag=True, help="Stop accepting the client's previous keys now")
@data_dir_option
def clients_rotate(client_id: str, out: Path, retire_old: bool, data_dir: Path | None) -> None:
    """Generate a new key pair for a client (the old keys stay valid unless --retire-old)."""
    from gateway.auth.clients import rotate_key

    with _session(data_dir) as session:
        try:
            kid = rotate_key(session, client_id, private_key_out=out, retire_old=retire_old)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        retired = "; previous keys retired" if retire_old else ""
        _audit_change(session, "admin-rotate-client-key", f"client {client_id}: new key {kid}{retired}")
        session.commit()
    click.echo(f"new key {kid} for {client_id} written to {out}")


@main.group()
def keys() -> None:
    """The gateway's own token-signing keys (under <data folder>/keys)."""


@keys.command("rotate")
@data_dir_option
def keys_rotate(data_dir: Path | None) -> None:
    """Add a new token-signing key; the previous key stays in the JWKS so tokens it signed stay valid.

    A running gateway loads its keys at start: restart every worker to sign with the new key."""
    from gateway.auth.keys import TokenKeys

    ring = TokenKeys(load_settings(data_dir).keys_dir)
    kid = ring.rotate()
    kept = [key.kid for key in ring.keyset.keys]
    click.echo(f"new token-signing key {kid}; the ring is now {', '.join(kept)} (restart the gateway to use it)")


def _audit_change(session, activity: str, description: str) -> None:  # type: ignore[no-untyped-def]
    """Appends the AuditEvent for a directory change made from the command line, in its transaction
    (the same activity the admin API records, with the operator as the CLI and the OS user)."""
    import getpass
    from datetime import UTC, datetime

    from audit.events import AuditContext, system_event
    from audit.store import append

    operator = AuditContext(client_id="spgw-cli", user=getpass.getuser())
    append(
        session,
        system_event(operator, activity=activity, outcome=0, description=description, recorded=datetime.now(UTC)),
    )


def _session(data_dir: Path | None):  # type: ignore[no-untyped-def]
    from sqlmodel import Session

    from gateway.db import make_engine
    from gateway.schema import init_db

    engine = make_engine(load_settings(data_dir))
    init_db(engine)
    return Session(engine)


def _engine(data_dir: Path | None):  # type: ignore[no-untyped-def]
    from gateway.db import make_engine
    from gateway.schema import init_db

    settings = load_settings(data_dir)
    engine = make_engine(settings)
    init_db(engine)
    return engine, settings


@main.command()
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
    engine, settings = _engine(data_dir)
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


@main.group()
def outbox() -> None:
    """Inspect and requeue deliveries."""


@outbox.command("list")
@click.option("--status", type=click.Choice(["pending", "delivered", "dead", "withdrawn"]), default=None)
@click.option("--json", "as_json", is_flag=True)
@data_dir_option
def outbox_list(status: str | None, as_json: bool, data_dir: Path | None) -> None:
    from gateway.delivery.worker import outbox_rows

    engine, _ = _engine(data_dir)
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

    engine, _ = _engine(data_dir)
    click.echo(f"requeued {retry(engine, list(ids) or None)}")


from gateway.cli_audit import audit  # noqa: E402  (the audit group needs the helpers above)

main.add_command(audit)


@main.command("import")
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

    engine, settings = _engine(data_dir)
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


@main.group()
def orgs() -> None:
    """Register organisations: GP practices, VCSE hosts (delivery mode, data-sharing agreement)."""


@orgs.command("put")
@click.argument("org_id")
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(["gp-practice", "referrer", "vcse", "icb"]))
@click.option("--delivery-mode", default="pull", show_default=True, type=click.Choice(["pull", "webhook"]))
@click.option("--webhook-url", default=None, help="Where a webhook host receives signed packets")
@click.option("--fhir-endpoint", default=None, help="Where a referrer receives outcome write-backs")
@click.option(
    "--allow",
    "allowed",
    multiple=True,
    help="A packet field the data-sharing agreement allows (repeat); default: the minimal packet",
)
@data_dir_option
def orgs_put(
    org_id: str,
    name: str,
    kind: str,
    delivery_mode: str,
    webhook_url: str | None,
    fhir_endpoint: str | None,
    allowed: tuple[str, ...],
    data_dir: Path | None,
) -> None:
    """Register or update an organisation; a new webhook secret is printed once."""
    from gateway.organisations import upsert_organisation

    with _session(data_dir) as session:
        try:
            org, secret = upsert_organisation(
                session,
                org_id=org_id,
                name=name,
                kind=kind,
                delivery_mode=delivery_mode,
                webhook_url=webhook_url,
                fhir_endpoint=fhir_endpoint,
                allowed_fields=allowed or None,
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        _audit_change(
            session,
            "admin-put-organisation",
            f"organisation {org_id} saved (agreement: {', '.join(org.allowed_fields) or 'nothing'})",
        )
        session.commit()
        click.echo(
            f"saved {org.id} ({org.kind}, {org.delivery_mode}); agreement: {', '.join(org.allowed_fields) or '-'}"
        )
    if secret:
        click.echo(f"webhook secret (shown once, give it to the host): {secret}")


@orgs.command("rotate-secret")
@click.argument("org_id")
@data_dir_option
def orgs_rotate_secret(org_id: str, data_dir: Path | None) -> None:
    """Give a webhook host a new signing secret (printed once; the old one stops verifying at once)."""
    from gateway.organisations import rotate_webhook_secret

    with _session(data_dir) as session:
        try:
            secret = rotate_webhook_secret(session, org_id)
        except (LookupError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        _audit_change(session, "admin-rotate-webhook-secret", f"organisation {org_id}: webhook secret rotated")
        session.commit()
    click.echo(f"new webhook secret for {org_id} (shown once, give it to the host): {secret}")


@orgs.command("list")
@click.option("--json", "as_json", is_flag=True)
@data_dir_option
def orgs_list(as_json: bool, data_dir: Path | None) -> None:
    from gateway.organisations import list_organisations, public_view

    with _session(data_dir) as session:
        rows = [public_view(o) for o in list_organisations(session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['id']:<8} {r['kind']:<12} {r['delivery_mode']:<8} {r['name']}")
