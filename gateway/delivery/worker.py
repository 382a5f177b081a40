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

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, or_
from sqlmodel import Session, select

from audit import store as audit_store
from audit.events import AuditContext, disclosure_event, system_event
from gateway.context import RequestContext
from gateway.db import is_postgres, transaction
from gateway.delivery.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError, for_status
from gateway.delivery.signing import signed_headers
from gateway.errors import trace_without_messages
from gateway.inbox import notify as inbox_notify
from gateway.models import Organisation, OutboxMessage, Packet, Referral
from gateway.pipeline import dispatch
from gateway.settings import Settings
from gateway.storage.repository import Repository
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
    engine: Engine, *, batch: int = CLAIM_BATCH, now: datetime | None = None, lease: timedelta = LEASE
) -> list[Claimed]:
    """Returns due rows, leased to this worker for `lease` (after which another worker may take them)."""
    now = now or datetime.now(UTC)
    with transaction(engine) as session:
        query = (
            select(OutboxMessage)
            .where(
                OutboxMessage.status == "pending",
                OutboxMessage.next_attempt_at <= now,
                or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),  # type: ignore[union-attr]
            )
            .order_by(OutboxMessage.pk)  # type: ignore[arg-type]
            .limit(batch)
        )
        if is_postgres(engine):
            query = query.with_for_update(skip_locked=True)
        rows = list(session.exec(query))
        claimed = []
        for row in rows:
            row.locked_until = now + lease
            session.add(row)
            claimed.append(
                Claimed(row.pk or 0, row.kind, row.target, row.dedup_key, row.body, row.content_type, row.attempts)
            )
    return claimed


def send(http: httpx.Client, org: Organisation | None, item: Claimed, settings: Settings) -> None:
    """Sends one message; raises a DeliveryError subclass when it did not land."""
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
        headers = {"Content-Type": "application/fhir+json", "X-Request-ID": item.dedup_key}
    else:
        if not org.webhook_url or not org.webhook_secret:
            raise PermanentDeliveryError(f"{org.id} has no webhook configured")
        url = org.webhook_url
        headers = {"Content-Type": "application/json", **signed_headers(org.webhook_secret, body, item.dedup_key)}
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
    packet = session.get(Packet, row.dedup_key)
    if row.kind == "referral" and packet is not None:
        referral = session.get(Referral, packet.referral_id)
        assert referral is not None
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
    [stored] = Repository(session, None).find_by_token("Observation", "identifier", first["system"], first["value"])
    return disclosure_event(
        WORKER_CONTEXT,
        recipient_org=row.target,
        patient_nhs=nhs,
        referral_ref=stored.resource["basedOn"][0]["reference"],
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
    packet = session.get(Packet, item.dedup_key)
    referral = session.get(Referral, packet.referral_id) if packet else None
    if packet is None or referral is None:
        return SendCheck(item, "the packet no longer exists")
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
        row = session.get(OutboxMessage, item.pk)
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


def deliver_one(engine: Engine, http: httpx.Client, item: Claimed, settings: Settings) -> bool:
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
    error: DeliveryError | None = None
    try:
        send(http, org, item, settings)
    except DeliveryError as exc:
        error = exc
    now = datetime.now(UTC)
    with transaction(engine) as session:
        row = session.get(OutboxMessage, item.pk)
        if row is None or row.status != "pending":
            return error is None
        if error is None:
            _record_success(session, row, item, now)
        else:
            log.info("delivery %s to %s failed: %s", item.dedup_key, item.target, error)
            _record_failure(session, row, error, settings, now)
    return error is None


def run_once(engine: Engine, settings: Settings, http: httpx.Client | None = None, *, lease: timedelta = LEASE) -> int:
    """Delivers every due row once; returns how many landed."""
    client = http or httpx.Client()
    try:
        landed = 0
        while batch := claim(engine, lease=lease):
            landed += sum(deliver_one(engine, client, item, settings) for item in batch)
            if len(batch) < CLAIM_BATCH:
                break
        return landed
    finally:
        if http is None:
            client.close()


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
