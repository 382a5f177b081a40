"""Server-side console sessions: the cookie carries a random token, the database its hash, the stage
(awaiting the security code, or signed in), the CSRF token and when the browser was last seen.

Idle timeout is enforced here, on the server: a session unused for `console_idle_minutes` is deleted
when next presented, whatever the browser still holds.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, delete, select

from gateway.console.models import ConsoleSession, ConsoleUser, SignInFailure
from gateway.models import utc

COOKIE = "spgw_console"
PRE_AUTH_COOKIE = "spgw_console_csrf"  # double-submit token for the sign-in form, before any session exists
COOKIE_PATH = "/console"  # never sent to /fhir, /vcse or /ig: a console cookie is not an API credential
CODE_STAGE_MINUTES = 5  # time to type the security code after the password
MAX_CODE_FAILURES = 5  # wrong codes before the password must be given again
TOUCH_SECONDS = 20  # write last_seen at most this often


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Current:
    """A presented, still-valid session and its user."""

    record: ConsoleSession
    user: ConsoleUser

    @property
    def signed_in(self) -> bool:
        return self.record.stage == "signed-in"


def start(session: Session, user: ConsoleUser, stage: str) -> str:
    """Creates a session for `user` at `stage`; returns the token for the cookie."""
    token = new_token()
    session.add(ConsoleSession(token_sha256=_hash(token), username=user.username, stage=stage, csrf_token=new_token()))
    return token


def promote(session: Session, current: Current) -> str:
    """The security code was right: replaces the code-stage session with a signed-in one under a new token
    (a token seen before authentication never becomes an authenticated one: no session fixation)."""
    session.delete(current.record)
    return start(session, current.user, "signed-in")


def lookup(session: Session, token: str | None, *, idle: timedelta, now: datetime | None = None) -> Current | None:
    """Returns the live session for this cookie value, or None; deletes an expired one."""
    if not token:
        return None
    now = now or datetime.now(UTC)
    record = session.get(ConsoleSession, _hash(token))
    if record is None:
        return None
    user = session.get(ConsoleUser, record.username)
    limit = timedelta(minutes=CODE_STAGE_MINUTES) if record.stage == "code" else idle
    if user is None or not user.active or now - utc(record.last_seen) > limit:  # type: ignore[operator]
        session.delete(record)
        return None
    if (now - utc(record.last_seen)).total_seconds() > TOUCH_SECONDS and record.stage == "signed-in":  # type: ignore[operator]
        record.last_seen = now
        session.add(record)
    return Current(record, user)


def end(session: Session, token: str | None) -> None:
    if token:
        session.exec(delete(ConsoleSession).where(ConsoleSession.token_sha256 == _hash(token)))  # type: ignore[call-overload]


def expired(session: Session, token: str | None) -> bool:
    """True when the cookie names no live session (used to tell "signed out for inactivity" apart)."""
    return bool(token) and session.get(ConsoleSession, _hash(token)) is None  # type: ignore[arg-type]


def _name_hash(username: str) -> str:
    return hashlib.sha256(username.strip().lower().encode()).hexdigest()


def record_failure(session: Session, username: str, source_ip: str | None) -> None:
    session.add(SignInFailure(username_sha256=_name_hash(username), source_ip=(source_ip or "")[:64]))


def paused(
    session: Session,
    username: str,
    source_ip: str | None,
    *,
    limit: int,
    window: timedelta,
    now: datetime | None = None,
) -> bool:
    """True when this username, or this address (at four times the limit), failed too often in the window.
    Counted in the database so every worker process shares the count."""
    since = (now or datetime.now(UTC)) - window
    by_user = session.exec(
        select(SignInFailure.pk).where(SignInFailure.username_sha256 == _name_hash(username), SignInFailure.at > since)
    ).all()
    if len(by_user) >= limit:
        return True
    if not source_ip:
        return False
    by_ip = session.exec(
        select(SignInFailure.pk).where(SignInFailure.source_ip == source_ip[:64], SignInFailure.at > since)
    ).all()
    return len(by_ip) >= 4 * limit


def forget_failures(session: Session, username: str) -> None:
    """A successful sign-in clears the user's count (the address count ages out on its own)."""
    session.exec(delete(SignInFailure).where(SignInFailure.username_sha256 == _name_hash(username)))  # type: ignore[call-overload]
