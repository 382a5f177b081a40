"""Database tables. Input is validated on non-table pydantic models elsewhere (SQLModel tables skip it).

Timestamps are stored as UTC; SQLite drops the zone, so `utc()` re-attaches it when read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

JsonType = JSON().with_variant(JSONB(), "postgresql")


def now_utc() -> datetime:
    return datetime.now(UTC)


def utc(value: datetime | None) -> datetime | None:
    """Returns the datetime with UTC attached (SQLite hands back naive values)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Organisation(SQLModel, table=True):
    """A GP practice or other referrer, a VCSE host, or the ICB that runs the gateway."""

    id: str = Field(primary_key=True, max_length=64)  # ODS code, or our VCSE id where it has none
    name: str = Field(max_length=200)
    kind: str = Field(max_length=32)  # gp-practice | vcse | referrer | icb
    identifier_system: str = Field(max_length=200)
    delivery_mode: str = Field(default="pull", max_length=16)  # pull | webhook
    webhook_url: str | None = Field(default=None, max_length=500)
    webhook_secret: str | None = Field(default=None, max_length=200)
    fhir_endpoint: str | None = Field(default=None, max_length=500)  # GP write-back target
    allowed_fields: list[str] = Field(default_factory=list, sa_column=Column(JsonType, nullable=False))
    # A widening of the agreement to identifying fields that an admin asked for and an IG officer has not
    # yet approved (separation of duties): it takes effect only on approval.
    pending_allowed_fields: list[str] | None = Field(default=None, sa_column=Column(JsonType, nullable=True))
    pending_requested_by: str | None = Field(default=None, max_length=100)
    active: bool = True
    created: datetime = Field(default_factory=now_utc)


class Client(SQLModel, table=True):
    """A registered API client: one organisation, one role, its public keys (JWKS)."""

    client_id: str = Field(primary_key=True, max_length=100)
    organisation_id: str = Field(foreign_key="organisation.id", index=True, max_length=64)
    role: str = Field(max_length=32)
    scopes: str = Field(sa_column=Column(Text, nullable=False))
    jwks: dict[str, Any] = Field(sa_column=Column(JsonType, nullable=False))
    active: bool = True
    created: datetime = Field(default_factory=now_utc)
    # Separation of duties: a client registered over the admin API waits, inactive, until the operator
    # confirms it out of band on the gateway host (`spgw clients approve`); `registered_by` names who asked.
    pending_approval: bool = False
    registered_by: str | None = Field(default=None, max_length=100)
    # May this client name its end user (X-End-User)? Recorded as "asserted by client X" when it does.
    may_assert_end_user: bool = False


class TokenFailureWindow(SQLModel, table=True):
    """Failed token requests per client id or source address in the current window (rate limiting shared
    by every worker process through the database)."""

    key: str = Field(primary_key=True, max_length=140)  # "client:<id>" or "ip:<address>"
    window_start: datetime
    failures: int = 0
    audited: bool = False  # the window's limit has been audited once


class UsedJti(SQLModel, table=True):
    """Client-assertion ids already seen (RFC 7523 §3 item 7), kept until their token would have expired."""

    __table_args__ = (UniqueConstraint("client_id", "jti"),)
    pk: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(max_length=100)
    jti: str = Field(max_length=200)
    expires_at: datetime = Field(index=True)


class FhirResource(SQLModel, table=True):
    """The current version of a FHIR resource: its JSON plus the columns tenancy and search need."""

    __tablename__ = "fhir_resource"
    __table_args__ = (
        UniqueConstraint("resource_type", "id"),
        Index("ix_resource_tenant", "resource_type", "tenant"),
        # One Patient per NHS number per tenant, kept by the database: of two concurrent referrals for
        # a new patient, the second insert fails and reuses the winner (pipeline/referrals.py).
        Index(
            "uq_patient_per_tenant",
            "tenant",
            "patient_nhs",
            unique=True,
            sqlite_where=text("resource_type = 'Patient'"),
            postgresql_where=text("resource_type = 'Patient'"),
        ),
    )
    pk: int | None = Field(default=None, primary_key=True)
    resource_type: str = Field(max_length=64)
    id: str = Field(max_length=64)
    version_id: int = 1
    tenant: str = Field(max_length=64)  # the organisation that owns it (the referrer)
    audience: str | None = Field(default=None, max_length=64, index=True)  # the one other org that may read
    patient_nhs: str | None = Field(default=None, max_length=10, index=True)
    date: datetime | None = Field(default=None, index=True)
    status: str | None = Field(default=None, max_length=32)
    last_updated: datetime = Field(default_factory=now_utc)
    content: str = Field(sa_column=Column(Text, nullable=False))


class ResourceVersion(SQLModel, table=True):
    """Every version of every resource (FHIR vread and history)."""

    __tablename__ = "fhir_resource_version"
    __table_args__ = (UniqueConstraint("resource_pk", "version_id"),)
    pk: int | None = Field(default=None, primary_key=True)
    resource_pk: int = Field(foreign_key="fhir_resource.pk")
    version_id: int
    last_updated: datetime
    content: str = Field(sa_column=Column(Text, nullable=False))


class SearchToken(SQLModel, table=True):
    """One indexed search value of a resource: token, reference or identifier-of-reference."""

    __tablename__ = "fhir_search_token"
    __table_args__ = (Index("ix_token_lookup", "param", "value", "system"),)
    pk: int | None = Field(default=None, primary_key=True)
    resource_pk: int = Field(foreign_key="fhir_resource.pk", index=True)
    param: str = Field(max_length=64)
    system: str = Field(default="", max_length=200)
    value: str = Field(max_length=200)


class Referral(SQLModel, table=True):
    """The gateway's record of one referral: the pseudonymous id VCSE hosts see, and how to re-identify it."""

    referral_id: str = Field(primary_key=True, max_length=40)
    service_request_id: str = Field(max_length=64, index=True)
    task_id: str = Field(max_length=64)
    tenant: str = Field(max_length=64, index=True)
    patient_id: str = Field(max_length=64)
    patient_nhs: str = Field(max_length=10, index=True)
    recipient: str | None = Field(default=None, max_length=64, index=True)
    extras: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JsonType, nullable=False))
    created: datetime = Field(default_factory=now_utc)


class Packet(SQLModel, table=True):
    """A message addressed to a VCSE host: a referral packet, or a recall or cease notice."""

    __table_args__ = (Index("ix_packet_feed", "recipient", "seq"),)
    packet_id: str = Field(primary_key=True, max_length=40)
    referral_id: str = Field(foreign_key="referral.referral_id", index=True, max_length=40)
    recipient: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)  # referral | recall | cease
    status: str = Field(default="new", max_length=16)  # new | accepted | declined | in-progress | completed | ...
    body: dict[str, Any] = Field(sa_column=Column(JsonType, nullable=False))
    fields: list[str] = Field(default_factory=list, sa_column=Column(JsonType, nullable=False))
    consent_id: str | None = Field(default=None, max_length=64)
    created: datetime = Field(default_factory=now_utc)
    # The host's change feed: the recipient's feed number of this packet's latest change (gateway/storage/feed.py).
    seq: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # SHA-256 of the content last disclosed to the host: a read of the same version is re-access, not disclosure.
    disclosed_sha256: str | None = Field(default=None, max_length=64)
    acknowledged_at: datetime | None = None


class FeedCounter(SQLModel, table=True):
    """Each recipient's last change-feed number; taking one locks the row until commit, so numbers become
    visible in the order they were taken and a cursor never skips a change committed late."""

    __tablename__ = "feed_counter"
    recipient: str = Field(primary_key=True, max_length=64)
    value: int = 0


class OutboxMessage(SQLModel, table=True):
    """A delivery owed to someone outside, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)
    pk: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)  # referral | recall | cease | fhir-writeback
    target: str = Field(max_length=64)  # organisation id
    dedup_key: str = Field(max_length=100, unique=True)
    body: str = Field(sa_column=Column(Text, nullable=False))
    content_type: str = Field(default="application/json", max_length=64)
    status: str = Field(default="pending", max_length=16)  # pending | delivered | dead
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=now_utc)
    locked_until: datetime | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created: datetime = Field(default_factory=now_utc)
    delivered_at: datetime | None = None


class IdempotencyRecord(SQLModel, table=True):
    """The first answer to a (client, X-Request-ID): a retry gets it again and stores nothing new."""

    __tablename__ = "idempotency"
    client_id: str = Field(primary_key=True, max_length=100)
    request_id: str = Field(primary_key=True, max_length=100)
    body_sha256: str = Field(max_length=64)
    status_code: int
    response: str = Field(sa_column=Column(Text, nullable=False))
    location: str | None = Field(default=None, max_length=300)
    created: datetime = Field(default_factory=now_utc)


class ReferralIdentifier(SQLModel, table=True):
    """A business identifier a tenant's referral was received under: unique per tenant, by the database,
    so two concurrent posts of one referral (a GP system retrying) store it once and the other gets 409."""

    __tablename__ = "referral_identifier"
    tenant: str = Field(primary_key=True, max_length=64)
    system: str = Field(primary_key=True, max_length=200)
    value: str = Field(primary_key=True, max_length=200)
    service_request_id: str = Field(max_length=64)


class V2Message(SQLModel, table=True):
    """HL7 v2 messages already processed, by the authenticated client (HTTP) or configured MLLP source
    that sent them, the MSH-3^MSH-4 they carried, and MSH-10, so a resend is not stored twice."""

    __tablename__ = "v2_message"
    client_id: str = Field(primary_key=True, max_length=100)
    sender: str = Field(primary_key=True, max_length=200)
    control_id: str = Field(primary_key=True, max_length=200)
    ack_code: str = Field(max_length=2)
    service_request_id: str | None = Field(default=None, max_length=64)
    created: datetime = Field(default_factory=now_utc)


class OutcomeRecord(SQLModel, table=True):
    """A VCSE outcome submission already processed (idempotency by submission_id per referral)."""

    __tablename__ = "outcome_submission"
    referral_id: str = Field(primary_key=True, max_length=40)
    submission_id: str = Field(primary_key=True, max_length=64)
    body_sha256: str = Field(max_length=64)
    stage: str = Field(max_length=16)
    observation_ids: list[str] = Field(default_factory=list, sa_column=Column(JsonType, nullable=False))
    submission: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JsonType, nullable=False))
    created: datetime = Field(default_factory=now_utc)
