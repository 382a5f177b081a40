"""FastAPI dependencies: the one place a request becomes an authenticated, scope-checked context.

`requires("ServiceRequest", "c", "create")` is all a route declares; adding or changing auth
changes this file only. The dependency also notes on `request.state` what the interaction is,
so that the error handler can audit a refused or failed call.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from sqlalchemy import select

from gateway.auth.principal import Principal
from gateway.auth.tokens import verify_access_token
from gateway.context import RequestContext, decode_routing_headers
from gateway.http import served_base_url
from gateway.models import Client
from gateway.state import AppState
from profiles.outcomes import bad_request, forbidden, unauthorized

MAX_END_USER = 200  # an end-user id (a practitioner's SDS id or an email) is far shorter


def app_state(request: Request) -> AppState:
    return request.app.state.spgw


def base_url(request: Request, state: AppState) -> str:
    """The gateway's external base URL: SPGW_PUBLIC_BASE_URL, else the address served (never `Host`)."""
    return (state.settings.public_base_url or served_base_url(request.scope)).rstrip("/")


def authenticate(request: Request, state: AppState) -> Principal:
    """Returns the caller named by a valid bearer token whose client is still active; 401 otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("This endpoint needs an access token: 'Authorization: Bearer <token>' (see /oauth2/token)")
    principal = verify_access_token(
        state.token_keys, token.strip(), issuer=base_url(request, state), cache=state.verified_tokens
    )
    # Asked on every request (a disabled client stops at once), as one autocommit read: no write lock.
    with state.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        row = conn.execute(
            select(Client.active, Client.may_assert_end_user).where(Client.client_id == principal.client_id)
        ).first()
    if row is None or not row.active:
        raise unauthorized("The client this token was issued to is disabled or unknown")
    user = end_user(request, principal.client_id, allowed=bool(row.may_assert_end_user))
    return Principal(principal.client_id, principal.organisation, principal.role, principal.scopes, user)


def end_user(request: Request, client_id: str, *, allowed: bool) -> str | None:
    """Returns the X-End-User the client names, when its registration lets it name one (403 otherwise).
    The gateway cannot verify it: the audit records it as asserted by this client."""
    raw = request.headers.get("x-end-user")
    if raw is None or not raw.strip():
        return None
    if not allowed:
        raise forbidden(
            f"Client {client_id} is not registered to name its end user (X-End-User); "
            "an admin can allow it (may_assert_end_user)"
        )
    value = raw.strip()
    if len(value) > MAX_END_USER or not value.isprintable():
        raise bad_request(f"X-End-User must be at most {MAX_END_USER} printable characters", expression="X-End-User")
    return value


def make_context(request: Request, state: AppState, principal: Principal | None) -> RequestContext:
    client = request.client
    return RequestContext(
        engine=state.engine,
        settings=state.settings,
        principal=principal,
        request_id=request.headers.get("x-request-id"),
        correlation_id=request.headers.get("x-correlation-id"),
        base_url=base_url(request, state),
        source_ip=client.host if client else None,
        routing=decode_routing_headers(request.headers),
    )


def requires(resource: str, permission: str, interaction: str) -> Callable[..., RequestContext]:
    """Returns a dependency that authenticates the caller and checks the SMART scope `system/<resource>.<p>`."""

    def dependency(request: Request) -> RequestContext:
        state = app_state(request)
        request.state.audit_interaction = (interaction, resource)
        principal = authenticate(request, state)
        request.state.principal = principal
        if not principal.may(resource, permission):
            raise forbidden(
                f"The {principal.role} role's token does not grant system/{resource}.{permission} "
                f"(needed to {interaction} {resource})"
            )
        return make_context(request, state, principal)

    return dependency


def public(resource: str, interaction: str) -> Callable[..., RequestContext]:
    """Returns a dependency for a route that needs no token (the CapabilityStatement, the token endpoint)."""

    def dependency(request: Request) -> RequestContext:
        request.state.audit_interaction = (interaction, resource)
        return make_context(request, app_state(request), None)

    return dependency
