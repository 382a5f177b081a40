"""Demo console accounts for `spgw demo`.

Demo accounts use TOTP like every other account: there is no code path that skips the security code.
Instead the demo prints each account's password and provisioning URI, and `spgw users code <name>`
prints the current code of a demo account (and refuses any other). The passwords are random per data
folder and kept beside the demo client keys (mode 0600), so a restart prints the same ones.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session

from gateway.console import users
from gateway.console.models import ConsoleUser
from gateway.console.roles import ConsoleRole
from gateway.settings import Settings


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: ConsoleRole
    organisation: str  # one of gateway.demo.DEMO_ORGANISATIONS


DEMO_USERS = (
    DemoUser("demo-ig-officer", ConsoleRole.IG_OFFICER, "QJM"),
    DemoUser("demo-vcse-staff", ConsoleRole.VCSE_STAFF, "8VC01"),  # Lincoln Befriending Network's inbox
)


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    organisation: str
    password: str
    provisioning_uri: str


def _store(settings: Settings) -> Path:
    return settings.data_dir / "demo-keys" / "console-users.json"


def seed_console_users(engine: Engine, settings: Settings) -> list[DemoLogin]:
    """Creates the demo console accounts (or gives them a new password when the stored one is lost);
    returns how to sign in as each."""
    path = _store(settings)
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    logins = []
    with Session(engine) as session:
        for demo in DEMO_USERS:
            password = known.get(demo.username)
            user = session.get(ConsoleUser, demo.username)
            if user is None or password is None:
                password = secrets.token_urlsafe(12)
                if user is None:
                    users.add_user(
                        session,
                        username=demo.username,
                        role=demo.role,
                        organisation_id=demo.organisation,
                        password=password,
                        demo=True,
                    )
                else:
                    users.reset_user(session, demo.username, password)
                known[demo.username] = password
            session.flush()
            user = session.get(ConsoleUser, demo.username)
            assert user is not None
            logins.append(
                DemoLogin(demo.username, demo.role.value, demo.organisation, password, users.provisioning_uri(user))
            )
        session.commit()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(known, out)
    return logins
