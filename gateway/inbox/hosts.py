"""A VCSE host's registered address for "a referral has arrived" emails."""

from __future__ import annotations

import re

from sqlmodel import Session

from gateway.inbox.models import HostNotification
from gateway.models import Organisation, now_utc

# A plain addr-spec (local@domain), no display name, no spaces or line breaks (which could add headers).
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


def set_address(session: Session, org_id: str, email: str | None) -> None:
    """Registers (or with None removes) the host's notification address; ValueError for a bad one."""
    org = session.get(Organisation, org_id)
    if org is None or org.kind != "vcse":
        raise ValueError(f"{org_id} is not a registered VCSE host")
    current = session.get(HostNotification, org_id)
    if email is None:
        if current is not None:
            session.delete(current)
        return
    email = email.strip()
    if len(email) > 254 or not _ADDRESS.match(email):
        raise ValueError(f"{email!r} is not an email address (write it as name@example.org)")
    current = current or HostNotification(organisation_id=org_id, email=email)
    current.email, current.updated = email, now_utc()
    session.add(current)


def address_of(session: Session, org_id: str) -> str | None:
    found = session.get(HostNotification, org_id)
    return found.email if found else None
