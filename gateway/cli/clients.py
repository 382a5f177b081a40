"""API clients and keys: `spgw token`, `spgw clients ...`, `spgw keys rotate`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.cli.common import audit_change, data_dir_option, load_settings, open_session


@click.command()
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
    import httpx

    try:
        click.echo(fetch_token(base_url=base_url.rstrip("/"), client_id=client_id, private_key_path=path, scope=scope))
    except TokenError as exc:
        raise click.ClickException(str(exc)) from None
    except httpx.TransportError as exc:
        # A gateway that is down or unreachable: one line, exit 1 (ClickException), no traceback.
        raise click.ClickException(
            f"cannot reach {base_url.rstrip('/')} ({type(exc).__name__}): is the gateway running there?"
        ) from None
    except httpx.InvalidURL:
        raise click.ClickException(f"{base_url!r} is not a URL the token request can be sent to") from None


@click.group()
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
        state = "active" if r["active"] else "pending" if r["pending_approval"] else "disabled"
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
@click.option("--may-assert-end-user", is_flag=True, help="Let the client name its end user (X-End-User)")
@data_dir_option
def clients_add(
    client_id: str,
    organisation: str,
    role: str,
    scopes: tuple[str, ...],
    generate_key: Path | None,
    jwks_file: Path | None,
    may_assert_end_user: bool,
    data_dir: Path | None,
) -> None:
    """Register a client with its public keys, or generate its key pair."""
    from gateway.auth.clients import add_client
    from gateway.auth.principal import Role

    jwks = json.loads(jwks_file.read_text()) if jwks_file else None
    with open_session(data_dir) as session:
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
                may_assert_end_user=may_assert_end_user,
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        audit_change(
            session, "admin-add-client", f"client {client.client_id} added ({client.role} for {client.organisation_id})"
        )
        session.commit()
        click.echo(f"added {client.client_id} ({client.role} for {client.organisation_id})")


@clients.command("approve")
@click.argument("client_id")
@data_dir_option
def clients_approve(client_id: str, data_dir: Path | None) -> None:
    """Activate a client an admin registered over the API, after confirming its keys with the organisation.

    Run on the gateway host, out of band from the admin API: read the printed key thumbprints to the
    organisation (by a channel you already trust) before approving. Separation of duties: an admin
    alone can register a client but never obtain a token for it."""
    from gateway.auth.clients import approve_client, key_thumbprints

    with open_session(data_dir) as session:
        try:
            client = approve_client(session, client_id)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        what = f"{client.role} for {client.organisation_id}"
        keys = key_thumbprints(client)
        audit_change(
            session,
            "admin-approve-client",
            f"client {client_id} approved ({what}, registered by {client.registered_by or 'unknown'})",
        )
        session.commit()
    click.echo(f"approved {client_id} ({what}); keys (kid: RFC 7638 thumbprint):")
    for line in keys:
        click.echo(f"  {line}")


@clients.command("disable")
@click.argument("client_id")
@data_dir_option
def clients_disable(client_id: str, data_dir: Path | None) -> None:
    """Disable a client: its tokens stop working at once."""
    from gateway.auth.clients import disable_client

    with open_session(data_dir) as session:
        try:
            disable_client(session, client_id)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        audit_change(session, "admin-disable-client", f"client {client_id} disabled")
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

    with open_session(data_dir) as session:
        try:
            kid = rotate_key(session, client_id, private_key_out=out, retire_old=retire_old)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        retired = "; previous keys retired" if retire_old else ""
        audit_change(session, "admin-rotate-client-key", f"client {client_id}: new key {kid}{retired}")
        session.commit()
    click.echo(f"new key {kid} for {client_id} written to {out}")


@click.group()
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
