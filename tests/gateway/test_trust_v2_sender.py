"""HL7 v2 de-duplication is bound to the caller (issue 10 item 2): the key is the authenticated client
(HTTP) or the configured MLLP source, MSH-3^MSH-4 and MSH-10; a caller over HTTP cannot speak as a
configured sender mapped to another client (AR with an ERR), nor block or probe another's control ids."""

from __future__ import annotations

import socket

import pytest

from gateway.cli.run import mllp_handler
from gateway.mllp import MllpServer, run_in_thread
from mappings.v2.framing import END_BLOCK, frame
from tests.fixtures.hl7v2.messages import er7, segments

V2_MEDIA = "x-application/hl7-v2+er7"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
MLLP_NHS = "9990000018"
CLAIMED_NHS = "9912003888"


@pytest.fixture
def mllp_port(app, engine, settings):
    settings.mllp_allowed_sources = "DEMOSENDER^DEMO=demo-gp"  # as `spgw demo` configures it
    port, stop = run_in_thread(MllpServer(mllp_handler(engine, settings)))
    yield port
    stop()


def over_mllp(port: int, message: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(frame(message))
        buffer = b""
        while not buffer.endswith(END_BLOCK):
            chunk = sock.recv(4096)
            if not chunk:
                break
            buffer += chunk
    return buffer.strip(b"\x0b\x1c\r").decode()


def post_v2(client, token_for, client_id: str, message: bytes):
    return client.post("/hl7v2", content=message, headers={**token_for(client_id), "Content-Type": V2_MEDIA})


def stored_for(client, token_for, client_id: str, nhs: str) -> list[dict]:
    found = client.get(
        "/fhir/ServiceRequest", params={"patient:identifier": f"{NHS_SYSTEM}|{nhs}"}, headers=token_for(client_id)
    )
    assert found.status_code == 200, found.text
    return [e["resource"] for e in found.json().get("entry") or []]


def test_a_caller_claiming_another_clients_sender_gets_ar_and_cannot_block_its_message(
    client, token_for, mllp_port: int
) -> None:
    claimed = er7(segments(nhs=CLAIMED_NHS, control_id="TRUSTCTL1", app="DEMOSENDER", facility="DEMO")).encode()

    refused = post_v2(client, token_for, "demo-gp-b", claimed)

    assert refused.status_code == 200
    assert "MSA|AR|TRUSTCTL1" in refused.text
    err = next(s for s in refused.text.split("\r") if s.startswith("ERR|"))
    assert "registered to another client" in err and "MSH^1^3" in err
    assert stored_for(client, token_for, "demo-gp-b", CLAIMED_NHS) == []
    # the real sender's message with that control id is accepted and stored
    real = er7(segments(nhs=MLLP_NHS, control_id="TRUSTCTL1", app="DEMOSENDER", facility="DEMO")).encode()
    ack = over_mllp(mllp_port, real)
    assert "MSA|AA|TRUSTCTL1" in ack
    assert len(stored_for(client, token_for, "demo-gp", MLLP_NHS)) == 1


def test_control_ids_of_one_caller_neither_block_nor_reveal_anothers(client, token_for, mllp_port: int) -> None:
    # practice B uses a label of its own (mapped to nobody) and a control id the MLLP sender will use
    own_label = er7(segments(nhs=CLAIMED_NHS, control_id="TRUSTCTL2", app="BPAS", facility="B82002")).encode()
    assert "MSA|AA|TRUSTCTL2" in post_v2(client, token_for, "demo-gp-b", own_label).text
    # the MLLP sender's message with the same control id is its own, stored
    real = er7(segments(nhs=MLLP_NHS, control_id="TRUSTCTL2", app="DEMOSENDER", facility="DEMO")).encode()
    assert "MSA|AA|TRUSTCTL2" in over_mllp(mllp_port, real)
    assert len(stored_for(client, token_for, "demo-gp", MLLP_NHS)) == 1
    # practice A over HTTP, same MSH-3/4 label and control id as B: not a duplicate of B's message
    a_copy = er7(segments(nhs=MLLP_NHS, control_id="TRUSTCTL2", app="BPAS", facility="B82002")).encode()
    answer = post_v2(client, token_for, "demo-gp", a_copy).text
    assert "Duplicate of a message already accepted" not in answer
    # a resend by the same caller is still recognised as one
    resend = post_v2(client, token_for, "demo-gp-b", own_label).text
    assert "MSA|AA|TRUSTCTL2" in resend and "Duplicate of a message already accepted" in resend
    assert len(stored_for(client, token_for, "demo-gp-b", CLAIMED_NHS)) == 1
