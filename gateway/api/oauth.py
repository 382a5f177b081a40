"""OAuth 2.0 endpoints: the token endpoint (client credentials with a signed JWT client assertion,
RFC 7523 `private_key_jwt`), the gateway's public keys, and SMART discovery for integrators."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from audit import store as audit_store
from audit.events import auth_event, system_event
from gateway.auth import ratelimit
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
    """RFC 6749 §4.4 client credentials; the jti replay record and the AuditEvent commit together.
    Failed requests are limited per claimed client id and per source address (gateway/auth/ratelimit.py)."""
    limits = ratelimit.Limits.of(ctx.settings)
    address, *claimed = ratelimit.keys_for(ctx.source_ip, await request.body())  # the body stays cached
    # An address over its limit is stopped before any verification.
    limited = await run_in_threadpool(_over_limit, ctx, [address], limits)
    if limited is not None:
        return limited
    with Session(ctx.engine) as session:
        response, result = await _endpoint(request).handle(request, session=session)
        if not result.ok:
            now = ratelimit.now_utc()
            # A claimed client over its limit: the failure is answered 429 and not audited one by one
            # (a request whose assertion verifies is never stopped by it: no lockout of the real client).
            hit = ratelimit.blocked(session, claimed, limits, now)
            if hit is not None:
                if hit[1]:
                    audit_store.append(session, _limit_event(ctx, hit[0], claimed[0]))
                session.commit()
                return _too_many(hit[0])
            ratelimit.record_failure(session, [address, *claimed], limits, now)
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


def _over_limit(ctx: RequestContext, keys: list[str], limits: ratelimit.Limits) -> Response | None:
    """Returns the 429 answer when a key is over its limit (audited once per window), else None."""
    with ctx.transaction():
        assert ctx.session is not None
        hit = ratelimit.blocked(ctx.session, keys, limits, ratelimit.now_utc())
        if hit is None:
            return None
        retry, first = hit
        if first:
            ctx.audit(_limit_event(ctx, retry, keys[0]))
    return _too_many(retry)


def _limit_event(ctx: RequestContext, retry: int, key: str) -> dict:
    description = (
        f"token requests for {key} refused for {retry} s: too many failures in the window (audited once a window)"
    )
    return auth_event(ctx.audit_context, outcome=4, description=description, recorded=ctx.now())


def _too_many(retry: int) -> Response:
    body = {
        "error": "invalid_request",
        "error_description": f"Too many failed token requests; try again in {retry} seconds.",
    }
    return JSONResponse(body, status_code=429, headers={"Retry-After": str(retry), "Cache-Control": "no-store"})


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
