"""The ASGI application for a process manager (`uvicorn gateway.asgi:app --workers N`), settings
from the environment (SPGW_*)."""

from gateway.app import create_app
from gateway.settings import Settings

app = create_app(Settings())
