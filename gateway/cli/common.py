"""What every `spgw` command shares: the data-folder option, settings, logging, database sessions, and
the audit record of a change made from the command line."""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path

import click

from gateway.settings import Settings

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data folder (SQLite database, keys); default $SPGW_DATA_DIR or ./data",
)


def load_settings(data_dir: Path | None) -> Settings:
    """Settings from the environment, with the data folder given on the command line taking precedence."""
    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def is_loopback(host: str) -> bool:
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


def configure_logging(log_format: str | None = None) -> None:
    """Log lines to stdout: text, or one JSON object a line when SPGW_LOG_FORMAT=json."""
    from gateway.logformat import JsonFormatter

    if log_format is None:
        log_format = Settings().log_format
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stdout)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter() if log_format == "json" else TraceOnlyFormatter(LOG_FORMAT))


def audit_change(session, activity: str, description: str) -> None:  # type: ignore[no-untyped-def]
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


def open_session(data_dir: Path | None):  # type: ignore[no-untyped-def]
    from sqlmodel import Session

    engine, _ = open_engine(data_dir)
    return Session(engine)


def open_engine(data_dir: Path | None):  # type: ignore[no-untyped-def]
    """The engine on a database at the current schema; a clear error naming `spgw migrate` otherwise
    (only `spgw migrate` changes the schema)."""
    from gateway.db import make_engine
    from gateway.schema import SchemaNotCurrent, require_current

    settings = load_settings(data_dir)
    engine = make_engine(settings)
    try:
        require_current(engine)
    except SchemaNotCurrent as exc:
        engine.dispose()
        raise click.ClickException(str(exc)) from None
    return engine, settings
