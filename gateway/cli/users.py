"""Console accounts for people: `spgw users add|list|disable|reset|code`.

People sign in to /console/ with a password and a TOTP code; they are not API clients (`spgw clients`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gateway.cli.common import audit_change, data_dir_option, open_session
from gateway.console.roles import ConsoleRole

ROLES = [role.value for role in ConsoleRole]


def _read_password(password_stdin: bool) -> str:
    if not password_stdin:
        raise click.UsageError("give the password on standard input with --password-stdin (never as an argument)")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.ClickException("no password was given on standard input")
    return password


def _print_provisioning(uri: str) -> None:
    click.echo(
        "Add this account to an authenticator app now (it is not shown again; `spgw users reset` makes a new one):"
    )
    click.echo(f"  {uri}")


@click.group()
def users() -> None:
    """Manage console users (people who sign in to /console/ with a password and a security code)."""


@users.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--org", "organisation", required=True, help="Organisation id (for vcse-staff: their VCSE host)")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
@data_dir_option
def users_add(username: str, role: str, organisation: str, password_stdin: bool, data_dir: Path | None) -> None:
    """Add a console user; prints the otpauth:// URI for their authenticator app, once."""
    from gateway.console.users import UserError, add_user

    password = _read_password(password_stdin)
    with open_session(data_dir) as session:
        try:
            created = add_user(
                session, username=username, role=ConsoleRole(role), organisation_id=organisation, password=password
            )
        except UserError as exc:
            raise click.ClickException(str(exc)) from None
        audit_change(session, "admin-add-console-user", f"console user {username} added ({role} for {organisation})")
        session.commit()
    click.echo(f"added console user {username} ({role} for {organisation})")
    _print_provisioning(created.provisioning_uri)


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list")
@data_dir_option
def users_list(as_json: bool, data_dir: Path | None) -> None:
    """List console users (never their secrets)."""
    from gateway.console.users import list_users

    with open_session(data_dir) as session:
        rows = list_users(session)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['username']:<24} {r['role']:<11} {r['organisation']:<8} {'active' if r['active'] else 'disabled'}"
        )


@users.command("disable")
@click.argument("username")
@data_dir_option
def users_disable(username: str, data_dir: Path | None) -> None:
    """Disable a console user: their sessions end at once."""
    from gateway.console.users import UserError, disable_user

    with open_session(data_dir) as session:
        try:
            disable_user(session, username)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None
        audit_change(session, "admin-disable-console-user", f"console user {username} disabled")
        session.commit()
    click.echo(f"disabled console user {username}")


@users.command("reset")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input")
@data_dir_option
def users_reset(username: str, password_stdin: bool, data_dir: Path | None) -> None:
    """Give a user a new password and a new authenticator secret (re-enables a disabled user)."""
    from gateway.console.users import UserError, reset_user

    password = _read_password(password_stdin)
    with open_session(data_dir) as session:
        try:
            created = reset_user(session, username, password)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None
        audit_change(session, "admin-reset-console-user", f"console user {username}: new password and TOTP secret")
        session.commit()
    click.echo(f"reset console user {username}")
    _print_provisioning(created.provisioning_uri)


@users.command("code")
@click.argument("username")
@data_dir_option
def users_code(username: str, data_dir: Path | None) -> None:
    """Print the current security code of a demo account (made by `spgw demo`; refused for real accounts)."""
    from gateway.console.users import UserError, current_demo_code

    with open_session(data_dir) as session:
        try:
            click.echo(current_demo_code(session, username))
        except UserError as exc:
            raise click.ClickException(str(exc)) from None
