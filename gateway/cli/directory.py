"""The directory of organisations: `spgw orgs put|list|rotate-secret`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.cli.common import audit_change, data_dir_option, load_settings, open_session


@click.group()
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
    from gateway.models import Organisation
    from gateway.organisations import endpoint_changes, endpoints_of, upsert_organisation

    with open_session(data_dir) as session:
        before = endpoints_of(session.get(Organisation, org_id))
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
                allow_insecure_endpoints=load_settings(data_dir).allow_insecure_endpoints,
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        audit_change(
            session,
            "admin-put-organisation",
            f"organisation {org_id} saved (agreement: {', '.join(org.allowed_fields) or 'nothing'})"
            + endpoint_changes(before, org),
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

    with open_session(data_dir) as session:
        try:
            secret = rotate_webhook_secret(session, org_id)
        except (LookupError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        audit_change(session, "admin-rotate-webhook-secret", f"organisation {org_id}: webhook secret rotated")
        session.commit()
    click.echo(f"new webhook secret for {org_id} (shown once, give it to the host): {secret}")


@orgs.command("list")
@click.option("--json", "as_json", is_flag=True)
@data_dir_option
def orgs_list(as_json: bool, data_dir: Path | None) -> None:
    from gateway.organisations import list_organisations, public_view

    with open_session(data_dir) as session:
        rows = [public_view(o) for o in list_organisations(session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['id']:<8} {r['kind']:<12} {r['delivery_mode']:<8} {r['name']}")
