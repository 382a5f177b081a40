"""Where a lost insert race can happen, and how it is contained."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlmodel import Session


@contextlib.contextmanager
def race_guard(session: Session) -> Iterator[None]:
    """Runs an insert that a concurrent transaction may win inside a savepoint on PostgreSQL, so the
    unique violation rolls back that insert only and the caller can answer with the winner. SQLite
    transactions here start with BEGIN IMMEDIATE (gateway/db.py), so no other writer can slip in
    between a look-up and an insert, and the savepoint (a flush and two statements) is not spent."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    with session.begin_nested():
        yield
