"""The console's home page: who you are, and the pages your role has."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.console.roles import ConsoleRole, register_nav

router = APIRouter(include_in_schema=False)  # /console/ itself is served by pages/sign_in.py

register_nav("Home", "/console/", *ConsoleRole)
