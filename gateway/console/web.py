"""What every console page shares: templates, the signed-in viewer, role checks, CSRF, cookies and
the security headers. A page module only declares routes with these (see docs/console.md)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audit.events import AuditContext
from gateway.cli.common import is_loopback
from gateway.console import sessions
from gateway.console.models import ConsoleUser
from gateway.console.roles import ConsoleRole, nav_for
from gateway.db import transaction
from gateway.state import AppState

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")  # autoescape is on for .html
CONSOLE_CLIENT = "console"  # the audit's client id for anything a person does in the console

# No inline script or style anywhere (htmx's own indicator style is switched off in base.html):
# 'self' only, so an injected <script> or style attribute does nothing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class ConsoleHeadersMiddleware:
    """Adds the CSP and friends to every console response; pages (not static files) are never cached,
    since they show personal data."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == "/" or path == "/console" or path.startswith("/console/")):
            await self.app(scope, receive, send)
            return
        static = path.startswith("/console/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"cache-control" or static]
                headers += SECURITY_HEADERS
                headers.append((b"cache-control", b"public, max-age=3600" if static else b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class Redirect(Exception):
    """Raised by a dependency to send the browser elsewhere (sign-in, an expired session)."""

    def __init__(self, location: str):
        self.location = location


class Refusal(Exception):
    """Raised to answer with the console's error page (wrong role, stale form)."""

    def __init__(self, status: int, title: str, message: str):
        self.status, self.title, self.message = status, title, message


def state(request: Request) -> AppState:
    return request.app.state.spgw


def secure_cookies(request: Request) -> bool:
    """Secure everywhere except plain http on loopback (the demo), where a Secure cookie would be dropped."""
    return request.url.scheme == "https" or not is_loopback(request.url.hostname or "")


def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=sessions.COOKIE_PATH,
        httponly=True,
        secure=secure_cookies(request),
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path=sessions.COOKIE_PATH, httponly=True, secure=secure_cookies(request), samesite="strict"
    )


def idle(request: Request) -> timedelta:
    return timedelta(minutes=state(request).settings.console_idle_minutes)


@dataclass
class Viewer:
    """The signed-in person on this request."""

    user: ConsoleUser
    csrf_token: str
    organisation_name: str

    @property
    def role(self) -> ConsoleRole:
        return ConsoleRole(self.user.role)

    def audit_context(self, request: Request) -> AuditContext:
        client = request.client
        return AuditContext(
            client_id=CONSOLE_CLIENT,
            organisation=self.user.organisation_id,
            role=self.user.role,
            user=self.user.username,
            request_id=request.headers.get("x-request-id"),
            source_ip=client.host if client else None,
        )


def _sign_in_url(request: Request, reason: str | None = None) -> str:
    url = "/console/sign-in"
    target = request.url.path
    if request.method == "GET" and target.startswith("/console/") and target != "/console/":
        url += "?next=" + quote(target, safe="/")  # the path only: a query can carry an NHS number
        return url + (f"&reason={reason}" if reason else "")
    return url + (f"?reason={reason}" if reason else "")


def current_viewer(request: Request) -> Viewer | None:
    """The signed-in viewer, or None (no cookie, an expired session, or still at the code stage)."""
    from gateway.models import Organisation

    token = request.cookies.get(sessions.COOKIE)
    with transaction(state(request).engine) as session:
        current = sessions.lookup(session, token, idle=idle(request))
        if current is None or not current.signed_in:
            return None
        org = session.get(Organisation, current.user.organisation_id)
        return Viewer(current.user, current.record.csrf_token, org.name if org else current.user.organisation_id)


def require(*roles: ConsoleRole) -> Callable[[Request], Viewer]:
    """A dependency: the signed-in viewer with one of `roles` (any role when none are given).
    Not signed in: to the sign-in page. Signed in with another role: 403. An API bearer token is not
    looked at here at all: only the console's own session cookie signs a person in."""

    def dependency(request: Request) -> Viewer:
        viewer = current_viewer(request)
        if viewer is None:
            reason = "idle" if request.cookies.get(sessions.COOKIE) else None
            raise Redirect(_sign_in_url(request, reason))
        if roles and viewer.role not in roles:
            raise Refusal(403, "You cannot see this page", "Your role does not include this page.")
        request.state.viewer = viewer
        return viewer

    return dependency


async def form_with_csrf(request: Request, expected: str) -> dict[str, str]:
    """Returns the posted form's text fields after checking its CSRF token (synchroniser token pattern)."""
    form = await request.form()
    given = form.get("csrf_token")
    if not isinstance(given, str) or not expected or not hmac.compare_digest(given, expected):
        raise Refusal(
            403,
            "This form has expired",
            "For your security the form could not be accepted. Go back, reload the page and try again.",
        )
    return {key: value for key, value in form.items() if isinstance(value, str)}


def render(
    request: Request, template: str, *, viewer: Viewer | None = None, status: int = 200, **context: Any
) -> Response:
    """Renders a page with the header navigation and CSRF token for this viewer."""
    context.update(
        viewer=viewer,
        nav=nav_for(viewer.user.role) if viewer else [],
        csrf_token=viewer.csrf_token if viewer else context.get("csrf_token", ""),
        path=request.url.path,
    )
    return templates.TemplateResponse(request, template, context, status_code=status)


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


def install_handlers(app: Any) -> None:
    @app.exception_handler(Redirect)
    async def on_redirect(request: Request, exc: Redirect) -> Response:
        response = redirect(exc.location)
        if request.headers.get("hx-request"):
            response = Response(status_code=204, headers={"HX-Redirect": exc.location})
        return response

    @app.exception_handler(Refusal)
    async def on_refusal(request: Request, exc: Refusal) -> Response:
        viewer = getattr(request.state, "viewer", None)
        return render(request, "error.html", viewer=viewer, status=exc.status, title=exc.title, message=exc.message)
