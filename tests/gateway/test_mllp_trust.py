"""Issue 10 items 10, 16 and 17 over real MLLP sockets: a whole-message deadline for slow senders, a
connection cap, a per-source allow-list, TLS with client certificates mapped to clients, and every
refusal (including an oversized frame) in the audit log. The gateway's own wiring (`start_mllp`, what
`spgw mllp` runs) is used wherever the audit or a client mapping is involved."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlmodel import Session, select

from audit.store import AuditEntry
from gateway.cli.run import start_mllp
from gateway.mllp import MllpServer, parse_networks, run_in_thread, server_context
from gateway.schema import init_db
from mappings.v2.framing import frame
from tests.fixtures.hl7v2.messages import ref_i12
from tests.gateway.test_mllp import msa, read_acks, v2_handler

pytestmark = pytest.mark.e2e
SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # MLLP's storage is the HTTP route's


def refusals(engine) -> list[str]:
    with Session(engine) as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.subtype_code == "mllp-refused")).all()
    return [json.loads(r.content)["outcomeDesc"] for r in rows]


def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    sock.settimeout(timeout)
    try:
        while chunk := sock.recv(4096):
            if chunk.endswith(b"\x1c\r") and b"MSA|AR" in chunk:
                continue
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@SQLITE
def test_a_sender_trickling_within_the_idle_timer_is_cut_off_at_the_message_deadline(engine, settings) -> None:
    init_db(engine)
    port = start_mllp(engine, settings.model_copy(update={"mllp_message_deadline": 1.5}), "127.0.0.1", 0)
    message = frame(ref_i12(control_id="SLOWLORIS"))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        sent = 0
        try:
            for byte in message[:-2]:  # a byte every 0.1 s: the 30 s idle timer never fires
                sock.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.1)
                if time.monotonic() - started > 5:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server cut the slow sender off: what this test wants
        assert closed_by_server(sock)
    assert time.monotonic() - started < 5, "the connection outlived the message deadline"
    wait_for(lambda: any("not completed within" in d for d in refusals(engine)))


def test_a_message_that_arrives_in_time_is_answered() -> None:
    bound, stop = run_in_thread(MllpServer(v2_handler, message_deadline=2.0))
    try:
        with socket.create_connection(("127.0.0.1", bound)) as sock:
            for chunk in (frame(ref_i12(control_id="INTIME"))[i : i + 200] for i in range(0, 2000, 200)):
                sock.sendall(chunk)
                time.sleep(0.05)
            [ack] = read_acks(sock, 1)
        assert msa(ack)[1:3] == ["AA", "INTIME"]
    finally:
        stop()


@SQLITE
def test_connections_beyond_the_cap_are_refused_and_audited(engine, settings) -> None:
    init_db(engine)
    port = start_mllp(engine, settings.model_copy(update={"mllp_max_connections": 2}), "127.0.0.1", 0)
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    try:
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port)) as third:
            assert closed_by_server(third, timeout=5)
        wait_for(lambda: any("already serves 2 connections" in d for d in refusals(engine)))
    finally:
        for sock in held:
            sock.close()


@SQLITE
def test_a_source_outside_the_allow_list_is_refused_and_audited(engine, settings) -> None:
    init_db(engine)
    port = start_mllp(engine, settings.model_copy(update={"mllp_allowed_ips": "192.0.2.0/24"}), "127.0.0.1", 0)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(frame(ref_i12(control_id="NOTALLOWED")))
        assert closed_by_server(sock, timeout=5)
    wait_for(lambda: any("127.0.0.1 is not in the MLLP allow-list" in d for d in refusals(engine)))


def test_an_allowed_source_is_served() -> None:
    bound, stop = run_in_thread(MllpServer(v2_handler, allowed_sources=parse_networks("10.0.0.0/8, 127.0.0.1")))
    try:
        with socket.create_connection(("127.0.0.1", bound)) as sock:
            sock.sendall(frame(ref_i12(control_id="ALLOWED")))
            [ack] = read_acks(sock, 1)
        assert msa(ack)[1:3] == ["AA", "ALLOWED"]
    finally:
        stop()


@SQLITE
def test_an_oversized_frame_is_audited(engine, settings) -> None:
    init_db(engine)
    port = start_mllp(engine, settings, "127.0.0.1", 0)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"\x0b" + b"A" * (1 << 20) + b"B" * 1024)
        assert "MSA|AR" in read_acks(sock, 1)[0]
    wait_for(lambda: any("exceeded" in d for d in refusals(engine)))


# -- TLS with client certificates ---------------------------------------------------------------


def _cert(subject: str, key, issuer_name: str, issuer_key, *, ca: bool = False) -> x509.Certificate:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if subject == "localhost":
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for localhost and two client certificates."""

    def pem(path: Path, data: bytes) -> Path:
        path.write_bytes(data)
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test-ca", ca_key, "test-ca", ca_key, ca=True)
    out = {"ca": pem(tmp_path / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))}
    for name in ("localhost", "trust-engine", "stranger"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(name, key, "test-ca", ca_key)
        out[f"{name}.crt"] = pem(tmp_path / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        raw = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        out[f"{name}.key"] = pem(tmp_path / f"{name}.key", raw)
    return out


def _tls_send(port: int, pki: dict[str, Path], client: str | None, message: bytes) -> str:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if client:
        context.load_cert_chain(pki[f"{client}.crt"], pki[f"{client}.key"])
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(frame(message))
        return read_acks(sock, 1)[0]


@SQLITE
def test_tls_client_certificates_are_mapped_to_clients(engine, settings, pki) -> None:
    init_db(engine)
    from gateway.demo import seed_directory

    seed_directory(engine, settings)
    tls = server_context(str(pki["localhost.crt"]), str(pki["localhost.key"]), str(pki["ca"]))
    mapped = settings.model_copy(update={"mllp_tls_clients": "trust-engine=demo-gp", "mllp_allowed_sources": ""})
    port = start_mllp(engine, mapped, "127.0.0.1", 0, tls)

    # The certificate names the client: any MSH-3/MSH-4 the mapping does not give to another client.
    ack = _tls_send(port, pki, "trust-engine", ref_i12(control_id="TLSOK", app="TRUSTPAS", facility="RX1"))
    assert msa(ack)[1:3] == ["AA", "TLSOK"]
    # A valid certificate that is not mapped to a client is refused.
    ack = _tls_send(port, pki, "stranger", ref_i12(control_id="TLSNO", app="TRUSTPAS", facility="RX1"))
    assert msa(ack)[1] == "AR"
    # Without a client certificate the handshake fails (TLS 1.3 reports it on the first read): no ACK.
    with pytest.raises((ssl.SSLError, OSError, IndexError)):
        _tls_send(port, pki, None, ref_i12(control_id="TLSNONE"))
