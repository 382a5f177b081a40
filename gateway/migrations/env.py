"""Alembic environment: runs migrations on the engine the gateway hands over (SQLite or PostgreSQL)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import audit.store  # noqa: F401  (the audit tables)
import gateway.console.models  # the console's tables (registered on the metadata)
import gateway.inbox.models  # the inbox's tables
import gateway.models  # noqa: F401  (the gateway tables)

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    from gateway.db import make_engine
    from gateway.settings import Settings

    engine = make_engine(Settings())

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
