"""The MLLP listener over real sockets on 127.0.0.1: ordering, trickling, truncation, limits, failures."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from hl7apy.parser import parse_message as hl7apy_parse
from hypothesis import HealthCheck, given, settings

from gateway.mllp import Handler, MllpServer, run_in_thread
from mappings.v2 import ack_for, process_v2
from mappings.v2.framing import END_BLOCK, frame
from tests.fixtures.hl7v2.messages import NHS, ref_i12
from tests.mappings.test_v2_process import corruptions

pytestmark = pytest.mark.e2e


async def v2_handler(message: bytes, peer: str) -> bytes:
    """The ingest as the gateway wires it, minus storage: parse, map, acknowledge."""
    now = datetime.now(UTC)
    return ack_for(process_v2(message, now=now), message, now=now).encode()


class Recorder:
    def __init__(self, fail_on: bytes | None = None) -> None:
        self.seen: list[tuple[bytes, str]] = []
        self.fail_on = fail_on

    async def __call__(self, message: bytes, peer: str) -> bytes:
        self.seen.append((message, peer))
        if self.fail_on is not None and self.fail_on in message:
            raise RuntimeError(f"handler bug while holding {message!r}")
        return await v2_handler(message, peer)


def serve(handler: Handler = v2_handler, **options: float) -> tuple[int, Callable[[], None]]:
    return run_in_thread(MllpServer(handler, **options))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def port(recorder: Recorder) -> Iterator[int]:
    bound, stop = run_in_thread(MllpServer(recorder, max_message_bytes=64 * 1024, idle_timeout=5.0))
    yield bound
    stop()


def read_acks(sock: socket.socket, count: int, timeout: float = 10.0) -> list[str]:
    sock.settimeout(timeout)
    buffer = b""
    while buffer.count(END_BLOCK) < count:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buffer += chunk
    return [block.lstrip(b"\x0b").decode() for block in buffer.split(END_BLOCK) if block]


def msa(ack: str) -> list[str]:
    hl7apy_parse(ack, find_groups=False)
    return next(s for s in ack.split("\r") if s.startswith("MSA|")).split("|")


def test_black_box_message_gets_aa(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(frame(ref_i12(control_id="BARSV2M1", app="DEMOSENDER", facility="DEMO")))
        [ack] = read_acks(sock, 1)
    assert msa(ack)[1:3] == ["AA", "BARSV2M1"]


def test_two_messages_in_one_write_are_answered_in_order(port: int, recorder: Recorder) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(frame(ref_i12(control_id="FIRST")) + frame(ref_i12(control_id="SECOND")))
        acks = read_acks(sock, 2)
    assert [msa(a)[2] for a in acks] == ["FIRST", "SECOND"]
    assert recorder.seen[0][1].startswith("127.0.0.1:")


def test_message_trickled_one_byte_at_a_time_is_answered(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, byte in enumerate(frame(ref_i12(control_id="SLOW"))):
            sock.sendall(bytes([byte]))
            if i % 50 == 0:
                time.sleep(0.002)
        [ack] = read_acks(sock, 1)
    assert msa(ack)[1:3] == ["AA", "SLOW"]


def test_truncated_frame_then_close_is_dropped_and_listener_lives(port: int, recorder: Recorder) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(frame(ref_i12())[:120])
        sock.shutdown(socket.SHUT_WR)
        assert read_acks(sock, 1) == []
    assert recorder.seen == []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(frame(ref_i12(control_id="AFTER")))
        assert msa(read_acks(sock, 1)[0])[2] == "AFTER"


def test_junk_before_a_start_block_is_ignored(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"hello\r\n" + frame(ref_i12(control_id="JUNKED")))
        assert msa(read_acks(sock, 1)[0])[1:3] == ["AA", "JUNKED"]


def test_oversized_frame_gets_ar_and_the_connection_is_closed(recorder: Recorder) -> None:
    bound, stop = serve(recorder, max_message_bytes=2048)
    try:
        with socket.create_connection(("127.0.0.1", bound)) as sock:
            big = ref_i12(control_id="BIG").replace(b"walking group", b"walking group " + b"x" * 10_000)
            sock.sendall(frame(ref_i12(control_id="SMALL")) + frame(big))
            acks = read_acks(sock, 3)
            assert sock.recv(1) == b""  # closed by the server
        assert [msa(a)[1:3] for a in acks] == [["AA", "SMALL"], ["AR", "BIG"]]
        assert "|207^Application internal error^HL70357|" in acks[1]
        assert "2048-byte limit" in acks[1]
        assert [m for m, _ in recorder.seen] == [ref_i12(control_id="SMALL")]
    finally:
        stop()


def test_handler_exception_gets_ar_207_and_the_connection_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(fail_on=b"BOOM")
    bound, stop = serve(recorder)
    try:
        with caplog.at_level(logging.INFO, logger="gateway.mllp"), \
                socket.create_connection(("127.0.0.1", bound)) as sock:
            sock.sendall(frame(ref_i12(control_id="BOOM")))
            [failed] = read_acks(sock, 1)
            sock.sendall(frame(ref_i12(control_id="NEXT")))
            [next_ack] = read_acks(sock, 1)
        assert msa(failed)[1:3] == ["AR", "BOOM"]
        assert "|207^Application internal error^HL70357|" in failed
        assert msa(next_ack)[1:3] == ["AA", "NEXT"]
        assert "RuntimeError" in caplog.text
        assert NHS not in caplog.text and "Robin" not in caplog.text
    finally:
        stop()


def test_idle_connection_is_closed() -> None:
    bound, stop = serve(idle_timeout=0.2)
    try:
        with socket.create_connection(("127.0.0.1", bound)) as sock:
            sock.settimeout(5)
            started = time.monotonic()
            assert sock.recv(1) == b""
            assert time.monotonic() - started < 4
    finally:
        stop()


def test_stop_closes_open_connections_and_frees_the_port() -> None:
    bound, stop = serve()
    sock = socket.create_connection(("127.0.0.1", bound))
    try:
        sock.sendall(b"\x0bpartial")
        time.sleep(0.05)
        stop()
        sock.settimeout(5)
        assert sock.recv(1) == b""
    finally:
        sock.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", bound), timeout=2).close()


@pytest.fixture(scope="module")
def fuzz_port() -> Iterator[int]:
    bound, stop = run_in_thread(MllpServer(v2_handler, idle_timeout=5.0))
    yield bound
    stop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(raw=corruptions())
def test_corrupted_messages_over_a_socket_always_get_one_parseable_ack(fuzz_port: int, raw: bytes) -> None:
    # MLLP content cannot carry the block characters, so a sender's corruption cannot include them.
    payload = raw.replace(b"\x0b", b"").replace(b"\x1c", b"")
    with socket.create_connection(("127.0.0.1", fuzz_port)) as sock:
        sock.sendall(frame(payload))
        acks = read_acks(sock, 1)
    assert len(acks) == 1
    assert msa(acks[0])[1] in ("AA", "AE", "AR")
