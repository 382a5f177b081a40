"""Console accounts: create, list, disable, reset; check a password (Argon2id) and a TOTP code (RFC 6238).

Service functions take the caller's open session and do not commit: the caller commits them together
with the audit event that records the change.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, delete, select

from gateway.console.models import ConsoleSession, ConsoleUser
from gateway.console.roles import ConsoleRole
from gateway.models import Organisation

ISSUER = "sp-gateway"
MIN_PASSWORD = 12  # NCSC password guidance: length over complexity rules
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_hasher = PasswordHasher()  # argon2-cffi's defaults: Argon2id, RFC 9106 low-memory profile
# Verified when the username is unknown, so a wrong username costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a real password, only for timing")


class UserError(ValueError):
    """A refused account change, in words a person can act on."""


@dataclass(frozen=True)
class NewCredentials:
    username: str
    provisioning_uri: str  # otpauth://totp/...: shown once, for an authenticator app


def provisioning_uri(user: ConsoleUser) -> str:
    return pyotp.TOTP(user.totp_secret).provisioning_uri(name=user.username, issuer_name=ISSUER)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must be at least {MIN_PASSWORD} characters long")


def add_user(
    session: Session, *, username: str, role: ConsoleRole, organisation_id: str, password: str, demo: bool = False
) -> NewCredentials:
    """Returns the new account's credentials; raises UserError for a taken name, unknown organisation or weak
    password. A vcse-staff account must belong to a VCSE host: it will see that host's referrals."""
    if not USERNAME.match(username):
        raise UserError("a username is 2-64 characters: lower-case letters, digits, '.', '_' or '-'")
    if session.get(ConsoleUser, username) is not None:
        raise UserError(f"there is already a console user called {username}")
    org = session.get(Organisation, organisation_id)
    if org is None:
        raise UserError(f"no organisation {organisation_id} is registered (see `spgw orgs list`)")
    if role is ConsoleRole.VCSE_STAFF and org.kind != "vcse":
        raise UserError(f"a vcse-staff user belongs to a VCSE host; {organisation_id} is a {org.kind}")
    _check_password(password)
    user = ConsoleUser(
        username=username,
        role=role.value,
        organisation_id=organisation_id,
        password_hash=_hasher.hash(password),
        totp_secret=pyotp.random_base32(),  # 32 base32 characters: 160 bits, RFC 4226's recommended length
        demo=demo,
    )
    session.add(user)
    return NewCredentials(username, provisioning_uri(user))


def list_users(session: Session) -> list[dict[str, Any]]:
    rows = session.exec(select(ConsoleUser).order_by(ConsoleUser.username)).all()
    return [
        {"username": u.username, "role": u.role, "organisation": u.organisation_id, "active": u.active} for u in rows
    ]


def _existing(session: Session, username: str) -> ConsoleUser:
    user = session.get(ConsoleUser, username)
    if user is None:
        raise UserError(f"there is no console user called {username}")
    return user


def end_sessions(session: Session, username: str) -> None:
    session.exec(delete(ConsoleSession).where(ConsoleSession.username == username))  # type: ignore[call-overload]


def disable_user(session: Session, username: str) -> None:
    """Disables the account and ends its sessions at once."""
    user = _existing(session, username)
    user.active = False
    session.add(user)
    end_sessions(session, username)


def reset_user(session: Session, username: str, password: str) -> NewCredentials:
    """Sets a new password and a new TOTP secret (a lost phone or a forgotten password), re-enables the
    account and ends its sessions; returns the new provisioning URI."""
    user = _existing(session, username)
    _check_password(password)
    user.password_hash = _hasher.hash(password)
    user.totp_secret = pyotp.random_base32()
    user.last_totp_step = 0
    user.active = True
    session.add(user)
    end_sessions(session, username)
    return NewCredentials(username, provisioning_uri(user))


def check_password(session: Session, username: str, password: str) -> ConsoleUser | None:
    """Returns the active user whose password this is, else None (same cost for an unknown username)."""
    user = session.get(ConsoleUser, username) if username else None
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        session.add(user)
    return user


def check_code(session: Session, user: ConsoleUser, code: str, now: float | None = None) -> bool:
    """True when `code` is the user's TOTP for this 30-second step or the one either side (clock drift,
    RFC 6238 §5.2) and newer than the last code accepted: a code is accepted once (no replay)."""
    code = re.sub(r"\s", "", code or "")
    if not re.fullmatch(r"\d{6}", code):
        return False
    totp = pyotp.TOTP(user.totp_secret)
    step = int((time.time() if now is None else now) // totp.interval)
    for candidate in (step - 1, step, step + 1):
        if candidate > user.last_totp_step and totp.at(candidate * totp.interval) == code:
            user.last_totp_step = candidate
            session.add(user)
            return True
    return False


def current_demo_code(session: Session, username: str) -> str:
    """The current code of a demo account (`spgw users code`); real accounts have theirs on a phone only."""
    user = _existing(session, username)
    if not user.demo:
        raise UserError(f"{username} is not a demo account: its codes are only on its authenticator")
    return pyotp.TOTP(user.totp_secret).now()
