"""Creating, upgrading and checking the database schema (Alembic migrations; see gateway/migrations).

Only `spgw migrate` (and `spgw demo`, which runs it once before starting) changes the schema:
`migrate` here. Every serving process calls `require_current` instead, which only reads the
revision and refuses to start when the database is behind the code.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlmodel import Session

import audit.store  # noqa: F401  (registers the audit tables on the metadata)
import gateway.console.jobs
import gateway.console.models  # the console's tables (registered on the metadata)
import gateway.inbox.models  # the inbox's tables (registered on the metadata)
import gateway.models  # noqa: F401  (registers the tables on the metadata)
from audit.store import ensure_head

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaNotCurrent(RuntimeError):
    """The database's schema is not the one this code needs: run `spgw migrate`."""


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Brings the schema to the newest migration and makes sure the audit head row exists (idempotent)."""
    command.upgrade(alembic_config(engine), "head")
    with Session(engine) as session:
        ensure_head(session)
        session.commit()


init_db = migrate  # the name the tests and benchmarks have always used


def head_revisions() -> set[str]:
    return set(ScriptDirectory(str(MIGRATIONS)).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    """The revisions the database is at (empty for a database that was never migrated)."""
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def require_current(engine: Engine) -> None:
    """Raises SchemaNotCurrent, with what to do, unless the database is at the code's newest migration."""
    current, head = current_revisions(engine), head_revisions()
    if current == head:
        return
    if not current:
        state = "has no sp-gateway schema (it was never migrated)"
    elif current - head:
        state = f"is at revision {', '.join(sorted(current))}, which this version of the code does not know"
    else:
        state = f"is at revision {', '.join(sorted(current))}, behind {', '.join(sorted(head))}"
    raise SchemaNotCurrent(f"The database {state}: run `spgw migrate` first (with the same settings).")
