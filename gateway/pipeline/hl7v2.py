"""HL7 v2 referrals into the same pipeline as FHIR: parse and map (mappings.v2), de-duplicate on
the sender and MSH-10, run the referral pipeline as the authenticated client, answer with an ACK.

Every message gets an ACK (AA accepted; AE content error, with ERR naming segment and field;
AR cannot be processed) and an AuditEvent, whatever happened; nothing here raises to the
transport. The sender's identity comes from the transport: the bearer token over HTTP, the
listener's allow-list (MSH-3^MSH-4 -> a registered client) over MLLP.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from audit import store as audit_store
from audit.events import AuditContext, system_event
from gateway.auth.principal import Principal, Role
from gateway.context import RequestContext
from gateway.db import transaction
from gateway.errors import trace_without_messages
from gateway.models import Client
from gateway.pipeline import referrals
from gateway.settings import Settings
from gateway.storage import v2messages
from mappings.v2 import V2Outcome, ack_for, process_v2
from mappings.v2.parse import ERR_DATA_TYPE, ERR_DUPLICATE_KEY, ERR_INTERNAL, ERR_UNKNOWN_KEY, V2Rejection
from profiles.outcomes import FhirError

log = logging.getLogger("spgw.hl7v2")
ERR_UNKNOWN_SENDER = ERR_UNKNOWN_KEY  # HL7 table 0357 204: unknown key identifier (an unregistered sender)
# HL7 table 0357 codes for what the FHIR pipeline refused: 102 data type error (the content broke a
# profile rule), 205 duplicate key identifier (the referral identifier was already received).
PIPELINE_ERR = {422: ERR_DATA_TYPE, 409: ERR_DUPLICATE_KEY}


def parse_sources(spec: str) -> dict[str, str]:
    """Returns {"APP^FACILITY": client_id} from 'APP^FAC=client,APP2^FAC2=client2'."""
    sources: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        sender, _, client_id = item.partition("=")
        if not client_id or "^" not in sender:
            raise ValueError(f"MLLP source '{item}' is not of the form APP^FACILITY=client_id")
        sources[sender.strip()] = client_id.strip()
    return sources


def principal_for_client(engine: Engine, client_id: str) -> Principal | None:
    """Returns the Principal of an active registered client (with its registered scopes), or None."""
    with Session(engine) as session:
        client = session.get(Client, client_id)
    if client is None or not client.active:
        return None
    return Principal(client.client_id, client.organisation_id, Role(client.role), frozenset(client.scopes.split()))


def principal_for_sender(engine: Engine, sources: dict[str, str], sender: tuple[str, str] | None) -> Principal | None:
    """Returns the registered client an MLLP sender is mapped to, if it is active and may refer."""
    client_id = sources.get(f"{sender[0]}^{sender[1]}") if sender else None
    principal = principal_for_client(engine, client_id) if client_id else None
    return principal if principal and principal.may("ServiceRequest", "c") else None


def principal_for_connection(
    engine: Engine,
    sources: dict[str, str],
    certificates: dict[str, str],
    sender: tuple[str, str] | None,
    certificate_cn: str | None,
) -> Principal | None:
    """Returns the client an MLLP message is from. Over TLS with a client certificate, the certificate
    decides (SPGW_MLLP_TLS_CLIENTS maps its CN); an MSH-3/MSH-4 that maps to another client is refused.
    Without one, the MSH-3/MSH-4 mapping decides (then guard the port: loopback, allow-list or TLS)."""
    if certificate_cn is None:
        return principal_for_sender(engine, sources, sender)
    client_id = certificates.get(certificate_cn)
    claimed = sources.get(f"{sender[0]}^{sender[1]}") if sender else None
    if client_id is None or (claimed is not None and claimed != client_id):
        return None
    principal = principal_for_client(engine, client_id)
    return principal if principal and principal.may("ServiceRequest", "c") else None


def audit_mllp_refusal(engine: Engine, source_ip: str, reason: str) -> None:
    """Records a connection or message the MLLP listener refused (allow-list, cap, deadline, size)."""
    with transaction(engine) as session:
        audit_store.append(
            session,
            system_event(
                AuditContext(source_ip=source_ip[:64]),
                activity="mllp-refused",
                outcome=4,
                description=f"MLLP refused: {reason}"[:500],
                recorded=datetime.now(UTC),
            ),
        )


def _audit(engine: Engine, ctx: AuditContext, outcome: V2Outcome | None, code: str, text: str) -> None:
    control = outcome.control_id if outcome else None
    description = f"HL7 v2 message {control or '(no MSH-10)'} answered {code}: {text}"[:1000]
    with transaction(engine) as session:
        audit_store.append(
            session,
            system_event(
                ctx,
                activity="hl7v2-message",
                outcome=0 if code == "AA" else 4,
                description=description,
                recorded=datetime.now(UTC),
            ),
        )


def _sender_key(outcome: V2Outcome) -> str:
    app, facility = outcome.sender or ("", "")
    return f"{app}^{facility}"[:200]


def _claimed_by_another(settings: Settings, principal: Principal, outcome: V2Outcome) -> V2Rejection | None:
    """Refuses a message whose MSH-3^MSH-4 is a configured sender mapped to another client: a caller
    speaks only as itself (an unmapped MSH-3^MSH-4 is the caller's own label, kept apart from other
    callers' by the de-duplication key, which holds the client)."""
    if outcome.sender is None:
        return None
    sender = _sender_key(outcome)
    owner = parse_sources(settings.mllp_allowed_sources).get(sender)
    if owner is None or owner == principal.client_id:
        return None
    return V2Rejection(
        "AR",
        "MSH",
        3,
        f"MSH-3^MSH-4 {sender} is a sender registered to another client; client {principal.client_id} "
        "may send only as itself",
        code=ERR_UNKNOWN_SENDER,
    )


def handle_message(
    engine: Engine,
    settings: Settings,
    principal: Principal | None,
    raw: bytes,
    *,
    source_ip: str | None = None,
    request_id: str | None = None,
    correlation_id: str | None = None,
) -> bytes:
    """Returns the ACK (ER7 bytes) for one v2 message; never raises."""
    now = datetime.now(UTC)
    outcome: V2Outcome | None = None
    audit_ctx = AuditContext(source_ip=source_ip, request_id=request_id, correlation_id=correlation_id)
    try:
        outcome = process_v2(raw, now=now)
        if principal is None:
            rejection = V2Rejection(
                "AR",
                "MSH",
                4,
                "The sending application and facility are not registered with this gateway",
                code=ERR_UNKNOWN_SENDER,
            )
            outcome = V2Outcome("AR", outcome.parsed, None, rejection, outcome.control_id, outcome.sender)
        elif (claimed := _claimed_by_another(settings, principal, outcome)) is not None:
            outcome = V2Outcome("AR", outcome.parsed, None, claimed, outcome.control_id, outcome.sender)
        audit_ctx = AuditContext(
            client_id=principal.client_id if principal else None,
            organisation=principal.organisation if principal else None,
            role=str(principal.role) if principal else None,
            source_ip=source_ip,
            request_id=request_id,
            correlation_id=correlation_id,
        )
        if outcome.ack_code != "AA" or outcome.bundle is None or principal is None:
            text = outcome.rejection.text if outcome.rejection else "refused"
            _audit(engine, audit_ctx, outcome, outcome.ack_code, text)
            return ack_for(outcome, raw, now=now).encode()
        return _accept(engine, settings, principal, outcome, raw, now, source_ip, request_id, correlation_id)
    except Exception as exc:  # a fault here must still answer the sender, never drop the connection
        # Types and frames only: an exception's message can quote the message content (names, NHS numbers).
        log.error("HL7 v2 handling failed: %s\n%s", type(exc).__name__, trace_without_messages(exc))
        failed = outcome or V2Outcome("AR", None, None, None, None, None)
        internal = V2Outcome("AR", failed.parsed, None, None, failed.control_id, failed.sender)
        try:
            _audit(engine, audit_ctx, failed, "AR", "internal error")
        except Exception as audit_exc:
            log.error("could not audit a failed HL7 v2 message\n%s", trace_without_messages(audit_exc))
        return ack_for(internal, raw, now=now, text="The message could not be processed").encode()


def _accept(
    engine: Engine,
    settings: Settings,
    principal: Principal,
    outcome: V2Outcome,
    raw: bytes,
    now: datetime,
    source_ip: str | None,
    request_id: str | None,
    correlation_id: str | None,
) -> bytes:
    """Runs the referral pipeline once per (client, MSH-3^MSH-4, MSH-10); a resend gets AA again and
    stores nothing. The client is the authenticated caller (HTTP) or the one the configured MLLP source
    maps to: another caller's control ids are neither blocked nor revealed by this one's."""
    assert outcome.bundle is not None and outcome.control_id is not None
    ctx = RequestContext(
        engine, settings, principal, request_id, correlation_id, settings.public_base_url or "", source_ip=source_ip
    )
    sender, control_id = _sender_key(outcome), outcome.control_id[:200]
    for attempt in range(2):
        try:
            with ctx.transaction() as session:
                if v2messages.seen(session, principal, sender, control_id):
                    ctx.audit(
                        system_event(
                            ctx.audit_context,
                            activity="hl7v2-duplicate",
                            outcome=0,
                            description=f"HL7 v2 message {control_id} already processed; AA repeated, nothing stored",
                            recorded=now,
                        )
                    )
                    return ack_for(outcome, raw, now=now, text="Duplicate of a message already accepted").encode()
                stored = referrals.accept_message(ctx, outcome.bundle, enforce_sender=False)
                sr_id = next(
                    (e["resource"]["id"] for e in stored["entry"] if e["resource"]["resourceType"] == "ServiceRequest"),
                    None,
                )
                v2messages.record(session, principal, sender, control_id, sr_id)
                ctx.audit(
                    system_event(
                        ctx.audit_context,
                        activity="hl7v2-message",
                        outcome=0,
                        description=f"HL7 v2 message {control_id} accepted",
                        recorded=now,
                        references=[f"ServiceRequest/{sr_id}"] if sr_id else (),
                    )
                )
            return ack_for(outcome, raw, now=now).encode()
        except IntegrityError:
            if attempt:
                raise
        except FhirError as error:
            first = error.issues[0] if error.issues else None
            text = (first.diagnostics if first else str(error))[:200]
            where = f" ({first.expression})" if first and first.expression else ""
            code = PIPELINE_ERR.get(error.status, ERR_INTERNAL)
            rejection = V2Rejection("AE", None, None, f"{text}{where}", code=code)
            refused = V2Outcome("AE", outcome.parsed, None, rejection, outcome.control_id, outcome.sender)
            _audit(engine, ctx.audit_context, refused, "AE", text)
            return ack_for(refused, raw, now=now).encode()
    raise AssertionError("unreachable")
