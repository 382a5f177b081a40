"""The FastAPI application factory."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from sqlalchemy import Engine

from gateway import errors
from gateway.api import admin, audit_events, fhir, hl7v2, ig, metadata, oauth, process_message, vcse
from gateway.auth.keys import TokenKeys
from gateway.db import make_engine
from gateway.http import AccessLogMiddleware, BodyLimitMiddleware, HeaderLimitMiddleware, TraceIdsMiddleware
from gateway.schema import init_db
from gateway.settings import Settings
from gateway.state import AppState


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = engine or make_engine(settings)
    init_db(engine)
    app = FastAPI(
        title="sp-gateway",
        summary="FHIR R4 gateway for social prescribing referrals, consent, delivery, outcomes and audit",
        version="0.1.0",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.spgw = AppState(settings=settings, engine=engine, token_keys=TokenKeys(settings.keys_dir))
    errors.install(app)
    fhir_routers = (metadata.router, process_message.router, fhir.router, audit_events.router)
    for router in fhir_routers:
        app.include_router(router)
    # The CapabilityStatement is built from exactly these routes (see api/metadata.py).
    app.state.fhir_routes = [route for router in fhir_routers for route in router.routes]
    for router in (oauth.router, vcse.router, ig.router, admin.router, hl7v2.router):
        app.include_router(router)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes, deadline=settings.http_body_deadline)
    app.add_middleware(TraceIdsMiddleware)
    app.add_middleware(HeaderLimitMiddleware)  # outside TraceIds: an oversized header is never read
    app.add_middleware(AccessLogMiddleware)
    logging.getLogger("spgw").setLevel(logging.INFO)
    return app
