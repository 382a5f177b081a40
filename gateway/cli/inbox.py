"""The referral inbox's settings: `spgw inbox set-email` (where a host hears about new referrals)."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.common import audit_change, data_dir_option, open_session


@click.group()
def inbox() -> None:
    """Settings of the VCSE referral inbox (/console/inbox)."""


@inbox.command("set-email")
@click.argument("org_id")
@click.argument("address", required=False)
@click.option("--none", "remove", is_flag=True, help="Stop the emails to this host")
@data_dir_option
def set_email(org_id: str, address: str | None, remove: bool, data_dir: Path | None) -> None:
    """Register the address that gets an email (no personal data, a link to the inbox) when a referral
    arrives for ORG_ID; the gateway sends it when SPGW_SMTP_HOST is set."""
    from gateway.inbox.hosts import set_address

    if remove == (address is not None):
        raise click.UsageError("give an ADDRESS, or --none to stop the emails")
    with open_session(data_dir) as session:
        try:
            set_address(session, org_id, None if remove else address)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        audit_change(session, "admin-set-inbox-email", f"inbox email for {org_id} {'removed' if remove else 'set'}")
        session.commit()
    click.echo(f"{org_id}: {'no inbox emails' if remove else f'inbox emails go to {address}'}")
