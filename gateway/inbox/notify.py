""" "A referral has arrived" emails to a VCSE host's registered address.

The email carries no personal data: not the person's name, not the need, not even the referral id;
only the host's own name and a link to the inbox, where signing in is what discloses anything.
It is queued in the outbox in the same transaction that offers the referral, and sent by the
delivery worker: a slow or broken SMTP server delays the email, never the referral's intake.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

import orjson
from sqlalchemy import select

from gateway.context import RequestContext
from gateway.delivery.errors import PermanentDeliveryError, RetryableDeliveryError
from gateway.inbox.models import HostNotification
from gateway.models import OutboxMessage
from gateway.settings import Settings

KIND = "inbox-email"  # the outbox kind the worker sends by SMTP
SUBJECT = "New social prescribing referral"
_ADDRESS = HostNotification.__table__.c  # type: ignore[attr-defined]


def inbox_url(ctx: RequestContext) -> str | None:
    """The inbox's address: SPGW_PUBLIC_BASE_URL, else the address the referral came in on; None when
    neither is a usable http(s) address (an MLLP or bulk intake without SPGW_PUBLIC_BASE_URL)."""
    base = (ctx.settings.public_base_url or ctx.base_url).rstrip("/")
    host = urlsplit(base).hostname or ""
    if urlsplit(base).scheme not in ("http", "https") or not host or host.endswith(".invalid"):
        return None
    return base + "/console/inbox"


def text(host_name: str, url: str | None) -> str:
    where = (
        f"Sign in to the inbox to read it:\n{url}" if url else "Sign in to the sp-gateway console's inbox to read it."
    )
    return (
        f"A new social prescribing referral has arrived for {host_name}.\n\n{where}\n\n"
        "This email holds no details about the person. Please do not reply to it.\n"
    )


def queue(ctx: RequestContext, host_id: str, host_name: str, packet_id: str) -> None:
    """Queues the email for a new referral packet when SMTP is set up and the host registered an address."""
    if not ctx.settings.smtp_host:
        return
    assert ctx.session is not None
    address = ctx.session.execute(select(_ADDRESS.email).where(_ADDRESS.organisation_id == host_id)).scalar()
    if not address:
        return
    body = {"to": address, "subject": SUBJECT, "text": text(host_name, inbox_url(ctx))}
    ctx.session.add(
        OutboxMessage(kind=KIND, target=host_id, dedup_key=f"mail-{packet_id}", body=orjson.dumps(body).decode())
    )


def message(settings: Settings, body: dict[str, str]) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = body["to"]
    msg["Subject"] = body["subject"]
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2].strip("> ") or None)
    msg.set_content(body["text"])
    return msg


def send(settings: Settings, raw_body: str) -> None:
    """Sends one queued email; raises a retryable error when the server is unreachable or says 4xx."""
    if not settings.smtp_host:
        raise PermanentDeliveryError("SMTP is not configured (SPGW_SMTP_HOST)")
    msg = message(settings, orjson.loads(raw_body))
    host, port, timeout = settings.smtp_host, settings.smtp_port, settings.delivery_timeout
    try:
        if settings.smtp_security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            if settings.smtp_security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            smtp.send_message(msg)
    except smtplib.SMTPResponseException as exc:
        error = f"SMTP {exc.smtp_code} from {host}"
        raise (RetryableDeliveryError if 400 <= exc.smtp_code < 500 else PermanentDeliveryError)(error) from None
    except smtplib.SMTPRecipientsRefused:
        raise PermanentDeliveryError(f"SMTP server {host} refused the recipient") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise RetryableDeliveryError(f"SMTP {host}:{port}: {type(exc).__name__}") from None
