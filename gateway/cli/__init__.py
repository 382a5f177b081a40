"""The `spgw` command line. Each module holds one family of commands; this one only assembles them."""

from __future__ import annotations

import click

from gateway.cli import audit, clients, directory, inbox, outbox, run, users
from gateway.cli.common import LOG_FORMAT, TraceOnlyFormatter

__all__ = ["LOG_FORMAT", "TraceOnlyFormatter", "main"]


@click.group()
def main() -> None:
    """sp-gateway: the social prescribing interoperability gateway."""


for command in (
    run.serve,
    run.demo,
    run.mllp,
    run.worker,
    clients.token,
    clients.clients,
    clients.keys,
    outbox.outbox,
    outbox.import_referrals,
    directory.orgs,
    audit.audit,
    users.users,
    inbox.inbox,
):
    main.add_command(command)
