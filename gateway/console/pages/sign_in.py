"""Signing in (username and password, then the security code), signing out, and `/`.

Two steps, so the code field appears only after a right password, and a stolen password alone opens
nothing. Every refusal is audited (DCM 110114 User Authentication) and counted for the rate limit.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from audit.events import AuditContext, auth_event
from audit.store import append
from gateway.console import sessions, users
from gateway.console.models import ConsoleUser
from gateway.console.roles import HOME, ConsoleRole
from gateway.console.web import (
    CONSOLE_CLIENT,
    clear_cookie,
    current_viewer,
    form_with_csrf,
    idle,
    redirect,
    render,
    set_cookie,
    state,
)
from gateway.db import transaction

router = APIRouter(include_in_schema=False)

REASONS = {
    "idle": "You were signed out because you had not used the console for {minutes} minutes.",
    "signed-out": "You have signed out.",
    "code-attempts": "Too many wrong security codes. Sign in again.",
}
PAUSED = "Too many failed sign-ins. Wait {minutes} minutes, then try again."
WRONG_PASSWORD = "The username or password is not recognised"  # noqa: S105 (a message, not a secret)
WRONG_CODE = "The security code is not right: enter the 6-digit code your authenticator app shows now"


@router.get("/")
def root() -> Response:
    """The gateway's front door: people go to the console; systems use /fhir (see the sign-in page's links)."""
    return redirect("/console/")


def _audit(request: Request, user: ConsoleUser | None, *, outcome: int, description: str) -> None:
    client = request.client
    context = AuditContext(
        client_id=CONSOLE_CLIENT,
        organisation=user.organisation_id if user else None,
        role=user.role if user else None,
        user=user.username if user else None,
        request_id=request.headers.get("x-request-id"),
        source_ip=client.host if client else None,
    )
    with transaction(state(request).engine) as session:
        append(session, auth_event(context, outcome=outcome, description=description, recorded=datetime.now(UTC)))


def _next(request: Request, user: ConsoleUser) -> str:
    target = request.query_params.get("next", "")
    # Only a console path: an open redirect to another site would make a fine phishing link.
    if target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return HOME[ConsoleRole(user.role)]


def _next_param(request: Request) -> str:
    return request.query_params.get("next", "")


def _sign_in_page(request: Request, *, error: str | None = None, username: str = "", status: int = 200) -> Response:
    token = request.cookies.get(sessions.PRE_AUTH_COOKIE) or sessions.new_token()
    reason = REASONS.get(request.query_params.get("reason", ""), "")
    response = render(
        request,
        "sign_in.html",
        status=status,
        csrf_token=token,
        error=error,
        username=username,
        notice=reason.format(minutes=state(request).settings.console_idle_minutes),
        next=request.query_params.get("next", ""),
    )
    set_cookie(response, request, sessions.PRE_AUTH_COOKIE, token)
    return response


@router.get("/console/")
def home(request: Request) -> Response:
    viewer = current_viewer(request)
    if viewer is None:
        reason = "?reason=idle" if request.cookies.get(sessions.COOKIE) else ""
        return redirect("/console/sign-in" + reason)
    return render(request, "home.html", viewer=viewer)


@router.get("/console")
def home_without_slash() -> Response:
    return redirect("/console/")


@router.get("/console/sign-in")
def sign_in_form(request: Request) -> Response:
    if current_viewer(request) is not None:
        return redirect("/console/")
    return _sign_in_page(request)


@router.post("/console/sign-in")
async def sign_in(request: Request) -> Response:
    form = await form_with_csrf(request, request.cookies.get(sessions.PRE_AUTH_COOKIE, ""))
    username, password = form.get("username", "").strip().lower(), form.get("password", "")
    if not username or not password:
        return _sign_in_page(request, error="Enter your username and password", username=username)
    settings = state(request).settings
    window = timedelta(minutes=settings.console_failure_window_minutes)
    source_ip = request.client.host if request.client else None
    with transaction(state(request).engine) as session:
        if sessions.paused(session, username, source_ip, limit=settings.console_max_failures, window=window):
            refused = "paused"
            user = None
        else:
            user = users.check_password(session, username, password)
            refused = "" if user else "password"
            if user is None:
                sessions.record_failure(session, username, source_ip)
            else:
                token = sessions.start(session, user, "code")
                session.flush()
                session.expunge(user)
    if refused == "paused":
        _audit(request, None, outcome=4, description="console sign-in refused: too many recent failures")
        return _sign_in_page(
            request, error=PAUSED.format(minutes=settings.console_failure_window_minutes), username=username
        )
    if user is None:
        _audit(request, None, outcome=4, description="console sign-in refused: username or password not recognised")
        return _sign_in_page(request, error=WRONG_PASSWORD, username=username)
    target = request.query_params.get("next", "")
    response = redirect("/console/sign-in/code" + (f"?next={quote(target, safe='/')}" if target else ""))
    set_cookie(response, request, sessions.COOKIE, token)
    return response


def _code_stage(request: Request) -> sessions.Current | None:
    with transaction(state(request).engine) as session:
        current = sessions.lookup(session, request.cookies.get(sessions.COOKIE), idle=idle(request))
        if current is not None:
            session.flush()
            session.expunge(current.record)
            session.expunge(current.user)
        return current if current is not None and current.record.stage == "code" else None


@router.get("/console/sign-in/code")
def code_form(request: Request) -> Response:
    current = _code_stage(request)
    if current is None:
        return redirect("/console/sign-in")
    return render(
        request, "sign_in_code.html", csrf_token=current.record.csrf_token, error=None, next=_next_param(request)
    )


@router.post("/console/sign-in/code")
async def code(request: Request) -> Response:
    current = _code_stage(request)
    if current is None:
        return redirect("/console/sign-in")
    form = await form_with_csrf(request, current.record.csrf_token)
    settings = state(request).settings
    source_ip = request.client.host if request.client else None
    window = timedelta(minutes=settings.console_failure_window_minutes)
    with transaction(state(request).engine) as session:
        record = session.merge(current.record)
        user = session.merge(current.user)
        if sessions.paused(session, user.username, source_ip, limit=settings.console_max_failures, window=window):
            outcome = "paused"
        elif users.check_code(session, user, form.get("security_code", "")):
            outcome = "ok"
            sessions.forget_failures(session, user.username)
            token = sessions.promote(session, sessions.Current(record, user))
        else:
            outcome = "wrong"
            sessions.record_failure(session, user.username, source_ip)
            record.code_failures += 1
            if record.code_failures >= sessions.MAX_CODE_FAILURES:
                session.delete(record)
                outcome = "too-many"
            else:
                session.add(record)
        session.flush()  # write before detaching: the transaction commits on leaving the block
        session.expunge_all()
    if outcome == "ok":
        _audit(request, user, outcome=0, description="console sign-in with password and security code")
        response = redirect(_next(request, user))
        set_cookie(response, request, sessions.COOKIE, token)
        clear_cookie(response, request, sessions.PRE_AUTH_COOKIE)
        return response
    _audit(request, user, outcome=4, description=f"console sign-in refused: security code ({outcome})")
    if outcome == "paused":
        response = _sign_in_page(request, error=PAUSED.format(minutes=settings.console_failure_window_minutes))
        clear_cookie(response, request, sessions.COOKIE)
        return response
    if outcome == "too-many":
        return redirect("/console/sign-in?reason=code-attempts")
    return render(
        request, "sign_in_code.html", csrf_token=current.record.csrf_token, error=WRONG_CODE, next=_next_param(request)
    )


@router.post("/console/sign-out")
async def sign_out(request: Request) -> Response:
    viewer = current_viewer(request)
    if viewer is None:
        return redirect("/console/sign-in")
    await form_with_csrf(request, viewer.csrf_token)
    with transaction(state(request).engine) as session:
        sessions.end(session, request.cookies.get(sessions.COOKIE))
    _audit(request, viewer.user, outcome=0, description="console sign-out")
    response = redirect("/console/sign-in?reason=signed-out")
    clear_cookie(response, request, sessions.COOKIE)
    return response
