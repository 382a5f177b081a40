"""FastAPI dependencies: the one place a request becomes an authenticated, scope-checked context.

`requires("ServiceRequest", "c", "create")` is all a route declares; adding or changing auth
changes this file only. The dependency also notes on `request.state` what the interaction is,
so that the error handler can audit a refused or failed call.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from sqlalchemy import select

from gateway.auth.principal import Principal, Role
from gateway.auth.tokens import verify_access_token
from gateway.context import RequestContext, decode_routing_headers
from gateway.models import Client
from gateway.state import AppState
from profiles.outcomes import forbidden, unauthorized


def app_state(request: Request) -> AppState:
    return request.app.state.spgw


def base_url(request: Request, state: AppState) -> str:
    return (state.settings.public_base_url or str(request.base_url)).rstrip("/")


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
        active = conn.execute(select(Client.active).where(Client.client_id == principal.client_id)).scalar()
    if not active:
        raise unauthorized("The client this token was issued to is disabled or unknown")
    user = request.headers.get("x-end-user") or None
    return Principal(principal.client_id, principal.organisation, principal.role, principal.scopes, user)


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


def requires(
    resource: str, permission: str, interaction: str, *, role: Role | None = None
) -> Callable[..., RequestContext]:
    """Returns a dependency that authenticates the caller and checks the SMART scope `system/<resource>.<p>`
    (and, with `role`, the caller's role: the admin API's directory is not the FHIR Organization a
    referrer may read)."""

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
        if role is not None and principal.role is not role:
            raise forbidden(
                f"Here system/{resource}.{permission} is the {role} role's ({interaction}); "
                f"a {principal.role} token cannot use it"
            )
        return make_context(request, state, principal)

    return dependency


def public(resource: str, interaction: str) -> Callable[..., RequestContext]:
    """Returns a dependency for a route that needs no token (the CapabilityStatement, the token endpoint)."""

    def dependency(request: Request) -> RequestContext:
        request.state.audit_interaction = (interaction, resource)
        return make_context(request, app_state(request), None)

    return dependency
