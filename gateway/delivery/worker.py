"""The delivery worker: claims due outbox rows, sends them, and records the result.

Claiming takes a lease (`locked_until`) in a short transaction of its own: with PostgreSQL
`FOR UPDATE SKIP LOCKED`, so several workers never take the same row; SQLite serialises
writers anyway. A worker killed mid-delivery leaves its lease to expire and another worker
(or the same one restarted) sends the row again: delivery is at least once, and receivers
de-duplicate on the packet id. A row is marked delivered only after the receiver said 2xx.
Failures are retried with exponential backoff and jitter, up to `delivery_max_attempts`,
then dead-lettered where `spgw outbox list --status dead` and the admin API show them.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine
from sqlmodel import Session, select

from audit import store as audit_store
from audit.canonical import canonical_json
from audit.events import AuditContext, disclosure_event, system_event
from gateway.context import RequestContext
from gateway.db import is_postgres, transaction
from gateway.delivery.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError, for_status
from gateway.delivery.signing import signed_headers
from gateway.endpoints import Resolver, check_resolved, system_resolver
from gateway.errors import trace_without_messages
from gateway.inbox import notify as inbox_notify
from gateway.metrics import DELIVERIES
from gateway.models import Organisation, OutboxMessage, Referral
from gateway.pipeline import dispatch
from gateway.settings import Settings
from gateway.storage import outbox, packets, resources
from gateway.storage.scope import DELIVERY, ForTenant
from mappings.packet import content_fields, restrict

log = logging.getLogger("spgw.worker")
LEASE = timedelta(seconds=60)
# Rows leased at once: small enough that a batch of slow receivers (each up to delivery_timeout,
# 10 s by default) is sent well inside the lease, so no second worker takes a row still in flight.
CLAIM_BATCH = 4
WORKER_CONTEXT = AuditContext(client_id="spgw-worker", role="system")


@dataclass(frozen=True)
class Claimed:
    pk: int
    kind: str
    target: str
    dedup_key: str
    body: str
    content_type: str
    attempts: int


def backoff(attempts: int, settings: Settings, rng: Callable[[float, float], float] = random.uniform) -> float:
    """Returns the delay before the next attempt: exponential, capped, with 'equal jitter'
    (half fixed, half random) so that many failed deliveries do not retry in lockstep."""
    delay = min(settings.delivery_backoff_cap, settings.delivery_backoff_base * (2 ** max(attempts - 1, 0)))
    return delay / 2 + rng(0, delay / 2)


def claim(
    engine: Engine,
    *,
    batch: int = CLAIM_BATCH,
    now: datetime | None = None,
    lease: timedelta = LEASE,
    skip_targets: frozenset[str] = frozenset(),
) -> list[Claimed]:
    """Returns due rows, leased to this worker for `lease` (after which another worker may take them),
    leaving out targets this pass already found unreachable."""
    now = now or datetime.now(UTC)
    with transaction(engine) as session:
        rows = outbox.lease_due(
            session,
            DELIVERY,
            now=now,
            batch=batch,
            lease=lease,
            skip_locked=is_postgres(engine),
            skip_targets=skip_targets,
        )
        return [
            Claimed(row.pk or 0, row.kind, row.target, row.dedup_key, row.body, row.content_type, row.attempts)
            for row in rows
        ]


def writeback_trace_ids(dedup_key: str) -> dict[str, str]:
    """X-Request-ID and X-Correlation-ID for a write-back: UUIDs as BaRS requires, derived from the
    delivery's key so that every retry of one write-back carries the same pair (the GP system's
    idempotency key), and no two write-backs share one."""
    request_id = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:spgw:writeback:{dedup_key}")
    return {"X-Request-ID": str(request_id), "X-Correlation-ID": str(request_id)}


def send(
    http: httpx.Client,
    org: Organisation | None,
    item: Claimed,
    settings: Settings,
    resolver: Resolver = system_resolver,
) -> None:
    """Sends one message; raises a DeliveryError subclass when it did not land. The endpoint's host is
    resolved and checked first (SSRF, DNS rebinding: gateway/endpoints.py); only the receiver's status
    code is ever kept from its answer."""
    if org is None:
        raise PermanentDeliveryError(f"organisation {item.target} is no longer registered")
    if item.kind == inbox_notify.KIND:
        inbox_notify.send(settings, item.body)  # SMTP, not HTTP: to the host's registered address
        return
    body = item.body.encode()
    if item.kind == "fhir-writeback":
        if not org.fhir_endpoint:
            raise PermanentDeliveryError(f"{org.id} has no FHIR endpoint configured")
        url = org.fhir_endpoint
        headers = {"Content-Type": "application/fhir+json", **writeback_trace_ids(item.dedup_key)}
    else:
        if not org.webhook_url or not org.webhook_secret:
            raise PermanentDeliveryError(f"{org.id} has no webhook configured")
        url = org.webhook_url
        headers = {"Content-Type": "application/json", **signed_headers(org.webhook_secret, body, item.dedup_key)}
    try:
        check_resolved(url, allow_insecure=settings.allow_insecure_endpoints, resolver=resolver)
    except ValueError as exc:
        raise PermanentDeliveryError(f"{org.id}: endpoint refused: {exc}") from None
    try:
        response = http.post(url, content=body, headers=headers, timeout=settings.delivery_timeout)
    except httpx.TransportError as exc:
        raise RetryableDeliveryError(f"{org.id}: {type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise for_status(response.status_code, org.id)


def _record_success(session: Session, row: OutboxMessage, sent: Claimed, now: datetime) -> None:
    """Marks the row delivered and audits it: a referral packet as a disclosure of exactly the fields
    in the body that was sent (consent may have narrowed it since it was queued)."""
    row.status, row.delivered_at, row.locked_until, row.last_error = "delivered", now, None, None
    row.attempts += 1
    session.add(row)
    found = packets.for_delivery(session, DELIVERY, row.dedup_key) if row.kind == "referral" else None
    if found is not None:
        packet, referral = found
        event = disclosure_event(
            WORKER_CONTEXT,
            recipient_org=row.target,
            patient_nhs=referral.patient_nhs,
            referral_ref=f"ServiceRequest/{referral.service_request_id}",
            packet_id=packet.packet_id,
            fields=content_fields(orjson.loads(sent.body)),
            consent_ref=f"Consent/{packet.consent_id}" if packet.consent_id else None,
            outcome=0,
            recorded=now,
        )
        # This version is now the host's: a later pull of the same content is re-access (gateway/pipeline/workflow.py).
        packet.disclosed_sha256 = hashlib.sha256(canonical_json(orjson.loads(sent.body))).hexdigest()
        session.add(packet)
    elif row.kind == "fhir-writeback":
        event = _write_back_disclosure(session, row, sent, now)
    else:
        event = system_event(
            WORKER_CONTEXT,
            activity=f"{row.kind}-delivered",
            outcome=0,
            description=f"{row.kind} {row.dedup_key} delivered to {row.target}",
            recorded=now,
        )
    audit_store.append(session, event)


def _record_failure(
    session: Session, row: OutboxMessage, error: DeliveryError, settings: Settings, now: datetime
) -> None:
    row.attempts += 1
    row.last_error = str(error)[:500]
    row.locked_until = None
    if isinstance(error, PermanentDeliveryError) or row.attempts >= settings.delivery_max_attempts:
        row.status = "dead"
        audit_store.append(
            session,
            system_event(
                WORKER_CONTEXT,
                activity="delivery-dead-lettered",
                outcome=8,
                description=f"{row.kind} {row.dedup_key} to {row.target} dead-lettered after {row.attempts} "
                f"attempt(s): {row.last_error}",
                recorded=now,
            ),
        )
    else:
        row.next_attempt_at = now + timedelta(seconds=backoff(row.attempts, settings))
    session.add(row)


@dataclass(frozen=True)
class SendCheck:
    """What the consent check at the moment of sending found."""

    item: Claimed  # the message to send, narrowed to what may go now
    why_not: str | None = None  # set when nothing may go
    consent_ended: Referral | None = None  # the referral whose consent no longer permits this recipient


def _write_back_disclosure(session: Session, row: OutboxMessage, sent: Claimed, now: datetime) -> dict[str, Any]:
    """Returns the disclosure event for outcomes written back to the referrer's FHIR endpoint: about
    whom (the NHS number the Bundle names), which referral, and which Observations (their identifiers),
    so the IG disclosure report shows the write-back beside the packets (IG rule 5)."""
    entries = [e["resource"] for e in orjson.loads(sent.body).get("entry", [])]
    nhs = entries[0]["subject"]["identifier"]["value"]
    first = entries[0]["identifier"][0]
    # The write-back goes to the referring practice: its own Observations, looked up in its tenant.
    # Identifiers are unique per referral; were one ever found twice, the newest names the referral.
    found = resources.by_token(
        session, ForTenant(row.target), "Observation", "identifier", first["system"], first["value"]
    )
    based_on = (found[0].resource.get("basedOn") or [{}])[0] if found else {}
    return disclosure_event(
        WORKER_CONTEXT,
        recipient_org=row.target,
        patient_nhs=nhs,
        referral_ref=based_on.get("reference") or f"Observation identifier {first['value']}",
        packet_id=row.dedup_key,
        fields=[f"Observation {e['identifier'][0]['value']}" for e in entries],
        consent_ref=None,
        outcome=0,
        recorded=now,
        kind="outcome-write-back",
    )


def _check_before_sending(session: Session, item: Claimed, org: Organisation | None, now: datetime) -> SendCheck:
    """Returns whether a referral packet may still go (not recalled or ceased, consent in force), narrowed
    to the fields consent and the agreement still allow (IG rule 1: permission per data category at the
    moment data leaves)."""
    if item.kind != "referral":
        return SendCheck(item)
    found = packets.for_delivery(session, DELIVERY, item.dedup_key)
    if found is None:
        return SendCheck(item, "the packet no longer exists")
    packet, referral = found
    if packet.status in ("recalled", "ceased"):
        return SendCheck(item, f"the packet was {packet.status}")
    decision = dispatch.current_decision(session, referral, packet.recipient, now)
    if not decision.permit:
        return SendCheck(item, f"consent no longer permits it: {decision.reason}", consent_ended=referral)
    body = orjson.loads(item.body)
    narrowed = restrict(body, categories=decision.categories, allowed_fields=org.allowed_fields if org else ())
    if narrowed.body == body:
        return SendCheck(item)
    return SendCheck(replace(item, body=orjson.dumps(narrowed.body).decode()))


def _withdraw(engine: Engine, settings: Settings, check: SendCheck) -> None:
    """Closes a row that may not be sent; when consent ended (withdrawn or expired without any change on
    record) the referral is reconsidered too: its packets ceased, its Task cancelled, cease notices queued."""
    item, why_not = check.item, check.why_not or ""
    ctx = RequestContext(engine, settings, None, None, None, settings.public_base_url or "")
    with ctx.transaction() as session:
        row = outbox.row(session, DELIVERY, item.pk)
        if row is None or row.status != "pending":
            return
        row.status, row.last_error, row.locked_until = "withdrawn", why_not[:500], None
        session.add(row)
        ctx.audit(
            system_event(
                WORKER_CONTEXT,
                activity="delivery-withdrawn",
                outcome=0,
                description=f"{item.kind} {item.dedup_key} to {item.target} not sent: {why_not}",
                recorded=datetime.now(UTC),
            )
        )
        if check.consent_ended is not None:
            dispatch.reconsider_patient(ctx, check.consent_ended.tenant, check.consent_ended.patient_nhs)


def deliver_one(
    engine: Engine, http: httpx.Client, item: Claimed, settings: Settings, resolver: Resolver = system_resolver
) -> bool:
    """Delivers one claimed row and records the outcome; returns True when it landed.

    Consent is checked again at the moment of sending: a withdrawal after the packet was queued
    stops it (IG rule 1), and the row is closed as `withdrawn` without anything leaving.
    """
    with Session(engine) as session:
        org = session.get(Organisation, item.target)
        check = _check_before_sending(session, item, org, datetime.now(UTC))
    if check.why_not is not None:
        _withdraw(engine, settings, check)
        return False
    item = check.item
    _record_attempt(engine, item)  # committed before anything leaves: no send without a record
    error: DeliveryError | None = None
    try:
        send(http, org, item, settings, resolver)
    except DeliveryError as exc:
        error = exc
    now = datetime.now(UTC)
    try:
        with transaction(engine) as session:
            row = outbox.row(session, DELIVERY, item.pk)
            if row is None or row.status != "pending":
                return error is None
            if error is None:
                _record_success(session, row, item, now)
                result = "succeeded"
            else:
                log.info("delivery %s to %s failed: %s", item.dedup_key, item.target, error)
                _record_failure(session, row, error, settings, now)
                result = "dead-lettered" if row.status == "dead" else "retried"
    except Exception as exc:
        # The answer is known but its record failed: say so in the audit and close the row on what the
        # receiver said, so a sent message is neither unrecorded nor sent again every lease.
        log.error("recording delivery %s failed\n%s", item.dedup_key, trace_without_messages(exc))
        _record_fallback(engine, item, error, settings, now, exc)
        result = "succeeded" if error is None else "retried"
    DELIVERIES.labels(result).inc()  # once committed
    return error is None


def _record_attempt(engine: Engine, item: Claimed) -> None:
    """Audits that a delivery is about to leave (outcome unknown until recorded): if the process dies
    or the outcome cannot be recorded after the send, the log still shows it was sent."""
    with transaction(engine) as session:
        audit_store.append(
            session,
            system_event(
                WORKER_CONTEXT,
                activity="delivery-attempt",
                outcome=0,
                description=f"{item.kind} {item.dedup_key} sending to {item.target} (attempt {item.attempts + 1}); "
                "outcome unknown until recorded",
                recorded=datetime.now(UTC),
            ),
        )


def _record_fallback(
    engine: Engine, item: Claimed, error: DeliveryError | None, settings: Settings, now: datetime, exc: Exception
) -> None:
    with transaction(engine) as session:
        row = outbox.row(session, DELIVERY, item.pk)
        if row is None or row.status != "pending":
            return
        if error is None:
            row.status, row.delivered_at, row.locked_until = "delivered", now, None
            row.attempts += 1
            row.last_error = f"delivered; its disclosure record failed ({type(exc).__name__})"
            session.add(row)
        else:
            _record_failure(session, row, error, settings, now)
        audit_store.append(
            session,
            system_event(
                WORKER_CONTEXT,
                activity="delivery-recorded-partially",
                outcome=4,
                description=f"{item.kind} {item.dedup_key} to {item.target}: "
                f"{'delivered' if error is None else 'failed'}; recording it in full failed ({type(exc).__name__})",
                recorded=now,
            ),
        )


def _release(engine: Engine, item: Claimed, settings: Settings, exc: Exception) -> None:
    """Puts a row whose handling failed before it was sent back in the queue, with a backoff, so that
    it neither blocks the rows leased with it nor waits out the whole lease."""
    now = datetime.now(UTC)
    with transaction(engine) as session:
        row = outbox.row(session, DELIVERY, item.pk)
        if row is None or row.status != "pending":
            return
        _record_failure(session, row, RetryableDeliveryError(f"internal error: {type(exc).__name__}"), settings, now)


def _deliver_isolated(
    engine: Engine, http: httpx.Client, item: Claimed, settings: Settings, resolver: Resolver
) -> bool:
    """Delivers one row; a fault with this row is logged and retried later, never stopping its batch."""
    try:
        return deliver_one(engine, http, item, settings, resolver)
    except Exception as exc:
        log.error("delivery %s failed inside the worker\n%s", item.dedup_key, trace_without_messages(exc))
        try:
            _release(engine, item, settings, exc)
        except Exception as release_exc:
            log.error("could not release delivery %s\n%s", item.dedup_key, trace_without_messages(release_exc))
        return False


def run_once(
    engine: Engine,
    settings: Settings,
    http: httpx.Client | None = None,
    *,
    lease: timedelta = LEASE,
    resolver: Resolver = system_resolver,
) -> int:
    """Delivers every due row once; returns how many landed."""
    client = http or httpx.Client()
    # A target that failed once in this pass is not tried again in it: its other rows wait for the
    # next pass instead of holding up every other host's deliveries (no head-of-line blocking).
    failed: set[str] = set()
    try:
        landed = 0
        while batch := claim(engine, lease=lease, skip_targets=frozenset(failed)):
            for item in batch:
                if item.target in failed:
                    release(engine, item)
                    continue
                if _deliver_isolated(engine, client, item, settings, resolver):
                    landed += 1
                elif _still_pending(engine, item):
                    failed.add(item.target)
            if len(batch) < CLAIM_BATCH:
                break
        return landed
    finally:
        if http is None:
            client.close()


def release(engine: Engine, item: Claimed) -> None:
    """Gives a claimed row back unattempted (no attempt counted): it is due again at once."""
    with transaction(engine) as session:
        row = outbox.row(session, DELIVERY, item.pk)
        if row is not None and row.status == "pending":
            row.locked_until = None
            session.add(row)


def _still_pending(engine: Engine, item: Claimed) -> bool:
    """True when a failed delivery is waiting for a retry (not withdrawn, not dead-lettered)."""
    with Session(engine) as session:
        row = outbox.row(session, DELIVERY, item.pk)
        return row is not None and row.status == "pending"


class WorkerThread(threading.Thread):
    """Runs the worker loop in the background (used by `spgw demo`; `spgw worker` runs it in front)."""

    def __init__(self, engine: Engine, settings: Settings, interval: float = 1.0, lease: timedelta = LEASE):
        super().__init__(name="spgw-delivery", daemon=True)
        self.engine, self.settings, self.interval, self.lease = engine, settings, interval, lease
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client() as http:
            while not self.stopping.is_set():
                try:
                    run_once(self.engine, self.settings, http, lease=self.lease)
                except Exception as exc:
                    # Types and frames only: a message could quote packet content.
                    log.error("delivery loop error; continuing\n%s", trace_without_messages(exc))
                self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()


def outbox_rows(engine: Engine, status: str | None = None) -> list[dict[str, object]]:
    """Returns the outbox as plain rows for `spgw outbox list` and the admin API (no message bodies)."""
    with Session(engine) as session:
        query = select(OutboxMessage).order_by(OutboxMessage.pk)  # type: ignore[arg-type]
        if status:
            query = query.where(OutboxMessage.status == status)
        return [
            {
                "id": r.pk,
                "kind": r.kind,
                "target": r.target,
                "message_id": r.dedup_key,
                "status": r.status,
                "attempts": r.attempts,
                "next_attempt_at": r.next_attempt_at.isoformat(),
                "last_error": r.last_error,
            }
            for r in session.exec(query)
        ]


def retry(engine: Engine, ids: list[int] | None = None) -> int:
    """Puts dead-lettered rows (all, or the ids given) back in the queue; returns how many."""
    now = datetime.now(UTC)
    with transaction(engine) as session:
        query = select(OutboxMessage).where(OutboxMessage.status == "dead")
        if ids:
            query = query.where(OutboxMessage.pk.in_(ids))  # type: ignore[union-attr]
        rows = list(session.exec(query))
        for row in rows:
            row.status, row.attempts, row.next_attempt_at, row.locked_until = "pending", 0, now, None
            session.add(row)
        if rows:
            audit_store.append(
                session,
                system_event(
                    WORKER_CONTEXT,
                    activity="delivery-requeued",
                    outcome=0,
                    description=f"{len(rows)} dead-lettered deliveries requeued",
                    recorded=now,
                ),
            )
    return len(rows)
