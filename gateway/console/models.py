"""Console tables: people who sign in to /console/, their server-side sessions, and failed sign-ins.

People are not API clients: an API client signs JWTs with a private key and reaches /fhir, /vcse
and /ig; a person signs in here with a password and a TOTP code and reaches /console/ only.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from gateway.models import now_utc


class ConsoleUser(SQLModel, table=True):
    """A person with a console account: one role, one organisation (for vcse-staff, the host they work for)."""

    __tablename__ = "console_user"
    username: str = Field(primary_key=True, max_length=64)
    role: str = Field(max_length=32)  # a ConsoleRole value
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=64)
    password_hash: str = Field(max_length=200)  # Argon2id, PHC string format
    totp_secret: str = Field(max_length=64)  # base32 (RFC 4648), RFC 6238 TOTP
    last_totp_step: int = 0  # the last accepted time step: a code is never accepted twice
    demo: bool = False  # made by `spgw demo`; only these may have their current code printed
    active: bool = True
    created: datetime = Field(default_factory=now_utc)


class ConsoleSession(SQLModel, table=True):
    """A browser's session. The cookie holds a random token; only its SHA-256 is stored here."""

    __tablename__ = "console_session"
    token_sha256: str = Field(primary_key=True, max_length=64)
    username: str = Field(foreign_key="console_user.username", index=True, max_length=64)
    stage: str = Field(max_length=16)  # "code" (password accepted, security code awaited) | "signed-in"
    csrf_token: str = Field(max_length=64)
    created: datetime = Field(default_factory=now_utc)
    last_seen: datetime = Field(default_factory=now_utc)
    code_failures: int = 0


class SignInFailure(SQLModel, table=True):
    """One refused sign-in, kept for the rate limit (per username and per source address)."""

    __tablename__ = "console_sign_in_failure"
    pk: int | None = Field(default=None, primary_key=True)
    # SHA-256 of the name typed, not the name: people type passwords into the username field.
    username_sha256: str = Field(max_length=64, index=True)
    source_ip: str = Field(default="", max_length=64, index=True)
    at: datetime = Field(default_factory=now_utc, index=True)
