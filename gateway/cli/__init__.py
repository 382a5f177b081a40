"""The `spgw` command line. Each module holds one family of commands; this one only assembles them."""

from __future__ import annotations

import click

from gateway.cli import audit, clients, directory, inbox, ops, outbox, run, users
from gateway.cli.common import LOG_FORMAT, TraceOnlyFormatter

__all__ = ["LOG_FORMAT", "TraceOnlyFormatter", "main"]


class _Gateway(click.Group):
    """Turns a refusal to start (a data folder others can read) into a clear one-line error, not a trace."""

    def invoke(self, ctx: click.Context) -> object:
        from gateway.datadir import DataFolderNotPrivate

        try:
            return super().invoke(ctx)
        except DataFolderNotPrivate as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Gateway)
def main() -> None:
    """sp-gateway: the social prescribing interoperability gateway."""


for command in (
    ops.migrate,
    ops.backup,
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
