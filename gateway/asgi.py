"""The ASGI application for a process manager (`uvicorn gateway.asgi:app --workers N`, or gunicorn with
uvicorn workers), settings from the environment (SPGW_*). Run `spgw migrate` first: importing this
refuses (SchemaNotCurrent, KeysMissing) on a database that is behind or a data folder without keys."""

import logging

from gateway.app import create_app
from gateway.cli.common import configure_logging
from gateway.settings import Settings

if not logging.getLogger().handlers:  # a worker process uvicorn or gunicorn started: nobody configured logging
    configure_logging()
app = create_app(Settings())
