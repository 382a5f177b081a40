"""OAuth 2.0 endpoints: the token endpoint (client credentials with a signed JWT client assertion,
RFC 7523 `private_key_jwt`), the gateway's public keys, and SMART discovery for integrators."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session
from starlette.responses import Response

from audit import store as audit_store
from audit.events import auth_event, system_event
from gateway.auth.principal import ROLE_SCOPES
from gateway.auth.server import ASSERTION_ALGS, PRIVATE_KEY_JWT, TokenEndpoint
from gateway.context import RequestContext
from gateway.deps import app_state, public
from gateway.http import JsonResponse

router = APIRouter(tags=["OAuth 2.0"])


def _endpoint(request: Request) -> TokenEndpoint:
    endpoint = getattr(request.app.state, "token_endpoint", None)
    if endpoint is None:
        state = app_state(request)
        endpoint = request.app.state.token_endpoint = TokenEndpoint(state.engine, state.settings, state.token_keys)
    return endpoint


@router.post("/oauth2/token", name="oauth.token")
async def token(request: Request, ctx: RequestContext = Depends(public("Token", "token-request"))) -> Response:
    """RFC 6749 §4.4 client credentials; the jti replay record and the AuditEvent commit together."""
    with Session(ctx.engine) as session:
        response, result = await _endpoint(request).handle(request, session=session)
        who = replace(
            ctx.audit_context,
            client_id=result.client_id,
            organisation=result.organisation,
            role=result.role,
            claimed_client_id=None if result.client_id else result.claimed_client_id,
        )
        description = "access token issued" if result.ok else f"token refused: {result.error}"
        if result.reason and not result.ok:
            description += f" ({result.reason[:300]})"
        audit_store.append(
            session, auth_event(who, outcome=0 if result.ok else 4, description=description, recorded=datetime.now(UTC))
        )
        session.commit()
    return response


def _audited(ctx: RequestContext, activity: str) -> None:
    with ctx.transaction():
        ctx.audit(system_event(ctx.audit_context, activity=activity, outcome=0, description=None, recorded=ctx.now()))


@router.get("/oauth2/jwks", name="oauth.jwks")
def jwks(request: Request, ctx: RequestContext = Depends(public("Keys", "jwks-read"))) -> JsonResponse:
    """The public keys that verify the gateway's access tokens (rotation keeps the previous key here)."""
    _audited(ctx, "jwks-read")
    return JsonResponse(app_state(request).token_keys.public_jwks())


@router.get("/.well-known/smart-configuration", name="oauth.smart-configuration")
def smart_configuration(ctx: RequestContext = Depends(public("Discovery", "smart-configuration-read"))):
    """SMART App Launch discovery: where the token endpoint is and what it accepts."""
    _audited(ctx, "smart-configuration-read")
    return JsonResponse(
        {
            "issuer": ctx.base_url,
            "token_endpoint": f"{ctx.base_url}/oauth2/token",
            "jwks_uri": f"{ctx.base_url}/oauth2/jwks",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": [PRIVATE_KEY_JWT],
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
            "scopes_supported": sorted({s for scopes in ROLE_SCOPES.values() for s in scopes}),
            "capabilities": ["client-confidential-asymmetric"],
        }
    )
