"""HL7 v2 messages already processed, kept per caller: the key is the client that sent the message
(the token's over HTTP, the one its MLLP source maps to), its MSH-3^MSH-4 and MSH-10. A caller sees
and blocks only its own control ids."""

from __future__ import annotations

from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.models import V2Message
from gateway.storage.scope import scoped


def _key(scope: Principal, sender: str, control_id: str) -> tuple[str, str, str]:
    return scope.client_id, sender[:200], control_id[:200]


@scoped(Principal)
def seen(session: Session, scope: Principal, sender: str, control_id: str) -> bool:
    """Returns whether this caller already had a message with this MSH-3^MSH-4 and MSH-10 accepted."""
    return session.get(V2Message, _key(scope, sender, control_id)) is not None


@scoped(Principal)
def record(session: Session, scope: Principal, sender: str, control_id: str, service_request_id: str | None) -> None:
    """Records an accepted message in the caller's transaction (a concurrent twin fails on the key)."""
    client_id, sender, control_id = _key(scope, sender, control_id)
    session.add(
        V2Message(
            client_id=client_id,
            sender=sender,
            control_id=control_id,
            ack_code="AA",
            service_request_id=service_request_id,
        )
    )
