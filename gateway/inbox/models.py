"""Inbox tables: where a host wants to hear about new referrals, and who acknowledged which notice."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from gateway.models import now_utc


class HostNotification(SQLModel, table=True):
    """A VCSE host's registered address for "a referral has arrived" emails (no personal data is sent)."""

    __tablename__ = "inbox_host_notification"
    organisation_id: str = Field(foreign_key="organisation.id", primary_key=True, max_length=64)
    email: str = Field(max_length=254)  # RFC 5321's longest forward path, less the angle brackets
    updated: datetime = Field(default_factory=now_utc)


class NoticeAcknowledgement(SQLModel, table=True):
    """A recall or cease notice that someone at the host has read and acknowledged in the inbox."""

    __tablename__ = "inbox_notice_ack"
    packet_id: str = Field(foreign_key="packet.packet_id", primary_key=True, max_length=40)
    username: str = Field(max_length=64)
    acknowledged: datetime = Field(default_factory=now_utc)
