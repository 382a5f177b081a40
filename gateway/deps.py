"""FastAPI dependencies: the one place a request becomes an authenticated, scope-checked context.

`requires("ServiceRequest", "c", "create")` is all a route declares; adding or changing auth
changes this file only. The dependency also notes on `request.state` what the interaction is,
so that the error handler can audit a refused or failed call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from sqlalchemy import select

from gateway.auth.principal import Principal, Role
from gateway.auth.tokens import verify_access_token
from gateway.context import RequestContext, decode_routing_headers
from gateway.http import served_base_url
from gateway.models import Client
from gateway.state import AppState
from profiles.outcomes import FhirError, Issue, bad_request, forbidden, unauthorized

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

    dependency.spgw_scope = f"system/{resource}.{permission}"  # type: ignore[attr-defined]  (for the OpenAPI)
    return dependency


def public(resource: str, interaction: str) -> Callable[..., RequestContext]:
    """Returns a dependency for a route that needs no token (the CapabilityStatement, the token endpoint)."""

    def dependency(request: Request) -> RequestContext:
        request.state.audit_interaction = (interaction, resource)
        return make_context(request, app_state(request), None)

    return dependency


def walk(dependant: Dependant) -> list[Dependant]:
    """Returns a route's dependant and all its sub-dependencies, depth first."""
    found = [dependant]
    for sub in dependant.dependencies:
        found.extend(walk(sub))
    return found


def declared_query_params(route: Any) -> frozenset[str]:
    """Returns the query parameter names a route (and its dependencies) declares, kept on the route."""
    known: frozenset[str] | None = getattr(route, "spgw_query_params", None)
    if known is None:
        known = frozenset(p.alias for d in walk(route.dependant) for p in d.query_params)
        route.spgw_query_params = known
    return known


def known_query_params(request: Request) -> None:
    """Router dependency: 400 naming the supported parameters when a query parameter is unknown, as the FHIR
    routes do (a misspelt `?sinse=` silently ignored would return everything)."""
    route = request.scope.get("route")
    if route is None or not hasattr(route, "dependant"):
        return
    allowed = declared_query_params(route)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        supported = ", ".join(sorted(allowed)) or "none"
        raise FhirError(
            400,
            [
                Issue(
                    "not-supported",
                    f"Unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                    f"this route supports: {supported}",
                    unknown[0],
                )
            ],
        )
