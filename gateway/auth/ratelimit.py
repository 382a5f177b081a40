"""Failed token requests are limited per claimed client id and per source address (issue: 300 bad
requests in a second all got 401, so a key or a client id could be guessed at line speed).

Fixed windows kept in the database (`TokenFailureWindow`), so every worker process shares the count.
A key with `limit` failures in the current window is answered 429 with Retry-After until the window
ends, without verifying anything; the first refusal of a window is audited, the rest are not (an
attacker must not be able to grow the audit log at line speed either). Successful requests are not
counted. The claimed client id is the assertion's unverified `sub`: a caller can only exhaust the
budget of the id it claims, and the per-address limit stops it spreading over many ids.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from gateway.models import TokenFailureWindow, utc
from gateway.settings import Settings

MAX_KEY = 140


@dataclass(frozen=True)
class Limits:
    per_client: int
    per_address: int
    window: timedelta

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.token_failures_per_client,
            settings.token_failures_per_address,
            timedelta(seconds=settings.token_failure_window),
        )

    def limit_for(self, key: str) -> int:
        return self.per_client if key.startswith("client:") else self.per_address


def keys_for(source_ip: str | None, form_body: bytes) -> list[str]:
    """Returns the keys a token request counts against: its source address and the client it claims."""
    keys = [f"ip:{source_ip or 'unknown'}"[:MAX_KEY]]
    sub = claimed_sub(form_body)
    if sub:
        keys.append(f"client:{sub}"[:MAX_KEY])
    return keys


def claimed_sub(form_body: bytes) -> str | None:
    """Returns the `sub` of the form's client assertion, unverified (only to pick a counter), or None."""
    try:
        form = dict(parse_qsl(form_body.decode("utf-8"), max_num_fields=16))
        payload = form.get("client_assertion", "").split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (UnicodeDecodeError, ValueError, IndexError, binascii.Error):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) and 0 < len(sub) <= 100 else None


def _current(session: Session, key: str, now: datetime, window: timedelta) -> TokenFailureWindow | None:
    row = session.get(TokenFailureWindow, key)
    if row is not None and utc(row.window_start) + window <= now:  # type: ignore[operator]
        row.window_start, row.failures, row.audited = now, 0, False
    return row


def blocked(session: Session, keys: list[str], limits: Limits, now: datetime) -> tuple[int, bool] | None:
    """Returns (seconds until the window ends, whether this is the window's first refusal to audit) when
    a key is over its limit, else None. Marks the window audited (the caller writes the one event)."""
    for key in keys:
        row = _current(session, key, now, limits.window)
        if row is None or row.failures < limits.limit_for(key):
            continue
        retry = max(1, int((utc(row.window_start) + limits.window - now).total_seconds()) + 1)  # type: ignore[operator]
        first = not row.audited
        row.audited = True
        session.add(row)
        session.flush()
        return retry, first
    return None


def record_failure(session: Session, keys: list[str], limits: Limits, now: datetime) -> None:
    """Counts one failed token request against each key (inside the caller's transaction)."""
    for key in keys:
        row = _current(session, key, now, limits.window)
        if row is not None:
            row.failures += 1
            session.add(row)
            session.flush()
            continue
        try:
            with session.begin_nested():  # two workers may open the same window at once: one wins
                session.add(TokenFailureWindow(key=key, window_start=now, failures=1, audited=False))
                session.flush()
        except IntegrityError:
            continue


def now_utc() -> datetime:
    return datetime.now(UTC)
