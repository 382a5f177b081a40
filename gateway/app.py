"""The FastAPI application factory."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from sqlalchemy import Engine

from gateway import errors
from gateway.api import admin, audit_events, fhir, health, hl7v2, ig, metadata, oauth, process_message, vcse
from gateway.api.negotiation import FhirNegotiationMiddleware
from gateway.api.openapi_doc import install_docs
from gateway.auth.keys import require_keys
from gateway.console.install import install_console
from gateway.db import make_engine
from gateway.http import AccessLogMiddleware, BodyLimitMiddleware, HeaderLimitMiddleware, TraceIdsMiddleware
from gateway.schema import require_current
from gateway.settings import Settings
from gateway.state import AppState


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Builds the app on a database `spgw migrate` has prepared. Changes nothing: raises SchemaNotCurrent
    or KeysMissing (each naming `spgw migrate`) instead of migrating or making keys itself, so that N
    processes started together share one schema and one token-signing key."""
    settings = settings or Settings()
    engine = engine or make_engine(settings)
    require_current(engine)
    token_keys = require_keys(settings.keys_dir)
    app = FastAPI(
        title="sp-gateway",
        summary="FHIR R4 gateway for social prescribing referrals, consent, delivery, outcomes and audit",
        version="0.1.0",
        docs_url=None,  # served offline by gateway/api/openapi_doc.py
        redoc_url=None,  # ReDoc would load from a CDN: not offered
        openapi_url="/openapi.json",
        # operationIds from route names ("vcse.set-status" -> vcse_set_status): what generated clients call.
        generate_unique_id_function=lambda route: route.name.replace(".", "_").replace("-", "_").replace("$", ""),
    )
    app.state.spgw = AppState(settings=settings, engine=engine, token_keys=token_keys)
    errors.install(app)
    fhir_routers = (metadata.router, process_message.router, fhir.router, audit_events.router)
    for router in fhir_routers:
        app.include_router(router)
    # The CapabilityStatement is built from exactly these routes (see api/metadata.py).
    app.state.fhir_routes = [route for router in fhir_routers for route in router.routes]
    for router in (oauth.router, vcse.router, ig.router, admin.router, hl7v2.router, health.router):
        app.include_router(router)
    install_console(app)
    if settings.sandbox:
        app.include_router(vcse.sandbox_router)
    install_docs(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes, deadline=settings.http_body_deadline)
    app.add_middleware(FhirNegotiationMiddleware)  # _format / Accept / _pretty / HEAD on every /fhir route
    app.add_middleware(TraceIdsMiddleware)
    app.add_middleware(HeaderLimitMiddleware)  # outside TraceIds: an oversized header is never read
    app.add_middleware(AccessLogMiddleware)
    logging.getLogger("spgw").setLevel(logging.INFO)
    return app
