"""Creating and upgrading the database schema (Alembic migrations; see gateway/migrations)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlmodel import Session

import audit.store  # noqa: F401  (registers the audit tables on the metadata)
import gateway.console.models  # the console's tables (registered on the metadata)
import gateway.inbox.models  # the inbox's tables (registered on the metadata)
import gateway.models  # noqa: F401  (registers the tables on the metadata)
from audit.store import ensure_head

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def init_db(engine: Engine) -> None:
    """Brings the schema to the newest migration and makes sure the audit head row exists."""
    command.upgrade(alembic_config(engine), "head")
    with Session(engine) as session:
        ensure_head(session)
        session.commit()
