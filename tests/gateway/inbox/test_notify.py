"""The "a referral has arrived" email: a real SMTP server (aiosmtpd) on 127.0.0.1 receives it from the
delivery worker, it holds no personal data, only a link to the inbox, and a down SMTP server neither
blocks nor breaks the referral's intake."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.message import Message

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from sqlmodel import Session, select

from gateway.cli import main
from gateway.delivery.worker import run_once
from gateway.demo import sample_message
from gateway.inbox.hosts import set_address
from gateway.inbox.notify import KIND
from gateway.models import OutboxMessage, Packet
from tests.gateway.test_cli_demo import free_port

NHS = "9990001006"
ADDRESS = "referrals@befriending.example.org"


class Sink:
    """An SMTP server's DATA handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        self.received.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 Message accepted"


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[Sink]:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture
def mail_settings(app, settings, engine, smtp_port: int):  # type: ignore[no-untyped-def]
    """The app's settings pointed at the test SMTP server, and an address registered for 8VC01."""
    settings.smtp_host, settings.smtp_port, settings.smtp_security = "127.0.0.1", smtp_port, "none"
    settings.smtp_from = "sp-gateway <gateway@icb.example.org>"
    with Session(engine) as session:
        set_address(session, "8VC01", ADDRESS)
        session.commit()
    return settings


def refer(client, token_for, ident: str = "MAIL-1") -> int:  # type: ignore[no-untyped-def]
    bundle = sample_message(NHS, "Ada", consent_to=["8VC01"], gp_ods="A81001", identifier=ident, performer="8VC01")
    answer = client.post(
        "/fhir/$process-message", json=bundle, headers={**token_for("demo-gp"), "Content-Type": "application/fhir+json"}
    )
    return answer.status_code


def mail_rows(engine) -> list[OutboxMessage]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).where(OutboxMessage.kind == KIND)))


def test_the_email_arrives_with_a_link_to_the_inbox_and_no_personal_data(
    client, token_for, engine, mail_settings, smtp: Sink
) -> None:
    assert refer(client, token_for) == 200
    assert run_once(engine, mail_settings) >= 1
    [(recipients, message)] = smtp.received
    assert recipients == [ADDRESS]
    assert message["Subject"] == "New social prescribing referral"
    assert message["From"] == "sp-gateway <gateway@icb.example.org>"
    text = message.get_payload(decode=True).decode()
    assert "http://testserver/console/inbox" in text
    assert "Lincoln Befriending Network (demo)" in text
    with Session(engine) as session:
        packet = session.exec(select(Packet).where(Packet.recipient == "8VC01")).one()
    whole = message.as_string()
    for personal in (NHS, "999 000 1006", "Ada", "07700900000", "Social isolation", packet.referral_id, "Demo"):
        assert personal not in whole, personal
    [row] = mail_rows(engine)
    assert row.status == "delivered"


def test_a_down_smtp_server_does_not_block_intake_and_the_email_is_retried(
    client, token_for, engine, mail_settings, smtp_port: int
) -> None:
    assert refer(client, token_for) == 200  # nothing listens on smtp_port yet
    assert run_once(engine, mail_settings) == 0
    [row] = mail_rows(engine)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "SMTP 127.0.0.1" in (row.last_error or "")
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        with Session(engine) as session:
            due = session.get(OutboxMessage, row.pk)
            assert due is not None
            due.next_attempt_at = due.created  # due now, instead of after the backoff
            session.add(due)
            session.commit()
        assert run_once(engine, mail_settings) == 1
    finally:
        controller.stop()
    assert [r for r, _ in sink.received] == [[ADDRESS]]


def test_no_email_is_queued_without_smtp_or_without_a_registered_address(client, token_for, engine, settings) -> None:
    with Session(engine) as session:
        set_address(session, "8VC01", ADDRESS)
        session.commit()
    assert refer(client, token_for, "MAIL-A") == 200  # SMTP not configured
    settings.smtp_host = "127.0.0.1"
    with Session(engine) as session:
        set_address(session, "8VC01", None)
        session.commit()
    assert refer(client, token_for, "MAIL-B") == 200  # configured, but no address for the host
    assert mail_rows(engine) == []


def test_spgw_inbox_set_email_checks_the_host_and_the_address(tmp_path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    assert runner.invoke(main, ["migrate", *data]).exit_code == 0  # commands never create the schema themselves
    for org, kind in (("8VC01", "vcse"), ("A81001", "gp-practice")):
        put = runner.invoke(main, ["orgs", "put", org, "--name", f"Org {org}", "--kind", kind, *data])
        assert put.exit_code == 0, put.output
    ok = runner.invoke(main, ["inbox", "set-email", "8VC01", ADDRESS, *data])
    assert ok.exit_code == 0, ok.output
    assert "inbox emails go to referrals@" in ok.output
    for bad in ("not an address", "a@b", "x@example.org\r\nBcc: all@example.org"):
        refused = runner.invoke(main, ["inbox", "set-email", "8VC01", bad, *data])
        assert refused.exit_code != 0 and "is not an email address" in refused.output
    gp = runner.invoke(main, ["inbox", "set-email", "A81001", ADDRESS, *data])
    assert gp.exit_code != 0 and "not a registered VCSE host" in gp.output
    assert runner.invoke(main, ["inbox", "set-email", "8VC01", "--none", *data]).exit_code == 0


@pytest.mark.parametrize(
    ("public", "base", "expected"),
    [
        (None, "http://testserver", "http://testserver/console/inbox"),
        ("https://gateway.icb.example.org/", "", "https://gateway.icb.example.org/console/inbox"),
        (None, "", None),  # MLLP or bulk intake without SPGW_PUBLIC_BASE_URL: no half-made link
        (None, "http://demo.invalid", None),
    ],
)
def test_the_link_is_absolute_or_left_out(public: str | None, base: str, expected: str | None) -> None:
    from gateway.context import RequestContext
    from gateway.inbox.notify import inbox_url, text
    from gateway.settings import Settings

    ctx = RequestContext(None, Settings(public_base_url=public), None, None, None, base)  # type: ignore[arg-type]
    assert inbox_url(ctx) == expected
    body = text("Walking Group", inbox_url(ctx))
    assert (expected or "console's inbox") in body
