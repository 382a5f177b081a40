"""Adds the console to the gateway's app: its routes, static files, error pages and security headers."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gateway.console import web
from gateway.console.pages import audit_search, charts, exports, home, inbox, integrity, patients, sign_in

STATIC = web.HERE / "static"


def install_console(app: FastAPI) -> None:
    for router in (
        sign_in.router,
        home.router,
        patients.router,
        inbox.router,
        audit_search.router,
        integrity.router,
        exports.router,
        charts.router,
    ):
        app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    web.install_handlers(app)
    app.add_middleware(web.ConsoleHeadersMiddleware)
