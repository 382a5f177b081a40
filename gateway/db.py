"""Database engine and sessions: SQLite (WAL) by default, PostgreSQL by URL.

SQLite serialises writers; we open every transaction with BEGIN IMMEDIATE so that two
writers queue on the lock instead of failing with 'database is locked' when a read
transaction later tries to write (the SQLite documentation's advice for WAL writers).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url
from sqlmodel import Session

from gateway.datadir import ensure_private_dir, narrow_sqlite_files, private_file
from gateway.settings import Settings


class _NoResultRows(logging.Filter):
    """Drops SQLAlchemy's DEBUG "Row (...)" records: result rows hold resource JSON and NHS numbers."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.DEBUG and str(record.msg).startswith("Row "))


def make_engine(settings: Settings) -> Engine:
    # No patient identifiers in logs, even when an operator turns SQL logging on (root at INFO/DEBUG):
    # bound parameters are hidden from log lines and exception messages, result rows are dropped.
    sql_log = logging.getLogger("sqlalchemy.engine.Engine")
    if not any(isinstance(f, _NoResultRows) for f in sql_log.filters):
        sql_log.addFilter(_NoResultRows())
    url = settings.db_url
    ensure_private_dir(settings.data_dir)  # keys live there whatever the database
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and Path(database).parent.is_dir():
            private_file(Path(database))  # 0600 before SQLite opens it: the -wal and -shm files copy its mode
            narrow_sqlite_files(Path(database))
        engine = create_engine(url, hide_parameters=True, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    # Timestamps are UTC throughout; pin the session zone so PostgreSQL never converts them.
    return create_engine(
        url,
        hide_parameters=True,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        connect_args={"options": "-c timezone=UTC"},
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        # A single read asked for in autocommit mode (e.g. "is this client still active?") takes no lock.
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """Yields a session whose work is committed on success and rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
