"""The sandbox: a synthetic referral for the calling VCSE host, so a CRM vendor can build against realistic
traffic without a GP. Only where the gateway runs with SPGW_SANDBOX=true (the demo does).

The referral goes through the real pipeline (profiles, consent, packet, audit) from a sandbox referrer
organisation, for a fictitious person with an NHS number in the 999 test range, with consent naming the host.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from sqlmodel import select

from gateway.auth.principal import ROLE_SCOPES, Principal, Role
from gateway.context import RequestContext
from gateway.demo import sample_message
from gateway.models import Organisation, Packet, Referral
from gateway.organisations import upsert_organisation
from gateway.pipeline import referrals
from profiles.nhs_number import check_digit
from profiles.outcomes import forbidden

SANDBOX_REFERRER = "SANDBOX"
SANDBOX_REFERRER_NAME = "Sandbox referrer (synthetic data)"
# Fictitious given names for synthetic people (none is anyone's real record).
_GIVEN = ("Alex", "Sam", "Jo", "Robin", "Kit", "Morgan", "Ash", "Rowan", "Sky", "Jude")


def synthetic_nhs_number() -> str:
    """Returns a valid NHS number (Modulus 11) in the 999 range NHS England keeps for testing."""
    while True:
        first_nine = "999" + "".join(secrets.choice("0123456789") for _ in range(6))
        digit = check_digit(first_nine)
        if digit is not None:
            return first_nine + str(digit)


def make_referral(ctx: RequestContext) -> dict[str, Any]:
    """Stores a synthetic referral addressed to the caller's organisation; returns its referral id, packet id
    and status. The caller must be a VCSE host registered on this gateway."""
    assert ctx.session is not None and ctx.principal is not None
    if ctx.principal.role != Role.VCSE:
        raise forbidden("The sandbox makes referrals for VCSE hosts: call it with a VCSE host's token")
    host = ctx.principal.organisation
    session = ctx.session
    if session.get(Organisation, SANDBOX_REFERRER) is None:
        upsert_organisation(session, org_id=SANDBOX_REFERRER, name=SANDBOX_REFERRER_NAME, kind="gp-practice")
    referrer = RequestContext(
        engine=ctx.engine,
        settings=ctx.settings,
        principal=Principal(
            "spgw-sandbox", SANDBOX_REFERRER, Role.REFERRER, frozenset(ROLE_SCOPES[Role.REFERRER]), ctx.principal.user
        ),
        request_id=ctx.request_id,
        correlation_id=ctx.correlation_id,
        base_url=ctx.base_url,
        source_ip=ctx.source_ip,
        session=session,
    )
    nhs = synthetic_nhs_number()
    message = sample_message(nhs, secrets.choice(_GIVEN), [host], SANDBOX_REFERRER, f"SANDBOX-{uuid.uuid4()}")
    referrals.accept_message(referrer, message)
    referral = session.exec(
        select(Referral).where(Referral.tenant == SANDBOX_REFERRER, Referral.patient_nhs == nhs)
    ).one()
    packet = session.exec(
        select(Packet).where(
            Packet.referral_id == referral.referral_id, Packet.kind == "referral", Packet.recipient == host
        )
    ).first()
    return {
        "referral_id": referral.referral_id,
        "packet_id": packet.packet_id if packet else None,
        "status": packet.status if packet else "not-offered",
    }
