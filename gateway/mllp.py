"""An asyncio MLLP listener: one HL7 v2 message in, one ACK out, in order, per connection.

    client ──SB msg EB CR──▶ MllpDecoder ──msg──▶ handler(msg, peer) ──ack──▶ frame ──▶ client

The handler gets each complete message without framing, plus the peer (its address, and the
subject CN of a verified TLS client certificate), and returns the ACK without framing. The listener
never dies because of what a client sends or what the handler does: an oversized block gets an AR
ACK and the connection is closed; a handler exception gets an AR ACK with ERR-3 207 (application
internal error) and the connection stays open; a block cut short by the client closing is dropped
quietly; a connection idle for `idle_timeout` seconds is closed.

Against senders that are slow or too many (issue: idle timers restarted on every byte): a message
must arrive whole within `message_deadline` seconds of its start block, at most `max_connections`
connections are served at once, and `allowed_sources` (addresses or networks) limits who may connect
at all. TLS (`ssl_context`, optionally requiring client certificates) protects the content in transit.
Every refusal (source not allowed, connection cap, deadline, oversized block) is reported to
`on_refusal(peer, reason)`, which the gateway audits. Logs carry error types and peers, never message
content (it identifies patients).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from mappings.v2.ack import build_ack
from mappings.v2.framing import MllpDecoder, MllpMessageTooLarge, frame
from mappings.v2.parse import ERR_INTERNAL, V2Rejection

log = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Peer(str):
    """The peer as "address:port" (a str, as handlers have always received it), plus `certificate_cn`:
    the subject common name of a TLS client certificate the listener verified, else None."""

    certificate_cn: str | None = None

    @property
    def address(self) -> str:
        return self.rsplit(":", 1)[0]


Handler = Callable[[bytes, str], Awaitable[bytes]]
RefusalHook = Callable[[str, str], Awaitable[None]]


def parse_networks(spec: str) -> list[Network]:
    """Returns the networks of 'a.b.c.d, e.f.g.0/24, ::1' (a bare address is a one-address network)."""
    return [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]


class MllpServer:
    """MLLP over TCP (HL7 v2 Transport Specification MLLP release 2), answering each message in turn."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_message_bytes: int = 1 << 20,
        idle_timeout: float = 30.0,
        message_deadline: float = 60.0,
        max_connections: int = 64,
        allowed_sources: Sequence[Network] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        on_refusal: RefusalHook | None = None,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self.message_deadline = message_deadline
        self.max_connections = max_connections
        self.allowed_sources = list(allowed_sources) if allowed_sources else None
        self.ssl_context = ssl_context
        self.on_refusal = on_refusal
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Starts listening; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("MLLP listener port %d on %s", self.port, self.host)
        return self.port

    async def stop(self) -> None:
        """Stops accepting, closes open connections and waits for them to finish."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        refusal = self._admission(peer)
        if refusal is not None:
            log.warning("MLLP connection from %s refused: %s", peer, refusal)
            await self._refused(peer, refusal)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._converse(reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            log.info("MLLP connection from %s ended abruptly", peer)
        except Exception as exc:
            log.error("MLLP connection from %s failed: %s", peer, type(exc).__name__)
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _admission(self, peer: Peer) -> str | None:
        """Returns why a new connection may not be served, or None."""
        if self.allowed_sources is not None:
            try:
                address = ipaddress.ip_address(peer.address.strip("[]"))
            except ValueError:
                return "the source address cannot be read"
            if not any(address in network for network in self.allowed_sources):
                return f"source address {address} is not in the MLLP allow-list"
        if len(self._connections) >= self.max_connections:
            return f"the listener already serves {self.max_connections} connections"
        return None

    async def _refused(self, peer: str, reason: str) -> None:
        if self.on_refusal is None:
            return
        try:
            await self.on_refusal(peer, reason)
        except Exception as exc:
            log.error("could not record an MLLP refusal: %s", type(exc).__name__)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer) -> None:
        decoder = MllpDecoder(self.max_message_bytes)
        started: float | None = None  # when the message being received began (its start block)
        while True:
            wait = self.idle_timeout
            if started is not None:
                wait = min(wait, started + self.message_deadline - time.monotonic())
            try:
                if wait <= 0:
                    raise TimeoutError
                data = await asyncio.wait_for(reader.read(_READ_SIZE), wait)
            except TimeoutError:
                if started is not None and time.monotonic() - started >= self.message_deadline:
                    reason = f"a message was not completed within {self.message_deadline:.0f} s"
                    log.warning("MLLP connection from %s: %s; closing", peer, reason)
                    await self._refused(peer, reason)
                    return
                log.info("MLLP connection from %s idle for %.0f s: closing", peer, self.idle_timeout)
                return
            if not data:
                if decoder.pending:
                    log.info("MLLP connection from %s closed inside a message: dropped", peer)
                return
            try:
                messages = decoder.feed(data)
            except MllpMessageTooLarge as too_large:
                for message in too_large.completed:
                    await self._answer(writer, message, peer)
                log.warning("MLLP message from %s exceeds %d bytes: AR and close", peer, too_large.limit)
                await self._refused(peer, f"a message exceeded {too_large.limit} bytes")
                await self._send(writer, _refusal(too_large.head, str(too_large)))
                return
            # The deadline runs from a message's start block to its end, however the bytes trickle in.
            if not decoder.in_message:
                started = None
            elif started is None or messages:
                started = time.monotonic()
            for message in messages:
                await self._answer(writer, message, peer)

    async def _answer(self, writer: asyncio.StreamWriter, message: bytes, peer: str) -> None:
        try:
            ack = await self.handler(message, peer)
        except Exception as exc:
            log.error("MLLP handler failed for a message from %s: %s", peer, type(exc).__name__)
            ack = _refusal(message, "The message could not be processed.")
        await self._send(writer, ack)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, ack: bytes) -> None:
        writer.write(frame(ack))
        await writer.drain()


def _refusal(message: bytes, text: str) -> bytes:
    """Returns an AR ACK with ERR-3 207 for `message` (or its first bytes)."""
    error = V2Rejection("AR", None, None, text, code=ERR_INTERNAL)
    return build_ack(None, "AR", error=error, raw=message, now=datetime.now(UTC)).encode()


def _peer(writer: asyncio.StreamWriter) -> Peer:
    address = writer.get_extra_info("peername")
    text = f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address or "?")
    peer = Peer(text)
    peer.certificate_cn = _certificate_cn(writer.get_extra_info("peercert"))
    return peer


def _certificate_cn(certificate: object) -> str | None:
    """Returns the subject CN of a verified client certificate (ssl's getpeercert() dict), else None."""
    if not isinstance(certificate, dict):
        return None
    for rdn in certificate.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


def server_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """Returns a TLS 1.2+ server context; with `client_ca`, clients must present a certificate it signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def run_in_thread(server: MllpServer) -> tuple[int, Callable[[], None]]:
    """Runs `server` on its own event loop in a daemon thread; returns (port, stop)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="mllp-listener", daemon=True)
    thread.start()
    try:
        port = asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=30)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        raise

    def stop() -> None:
        if not loop.is_running():
            return
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()

    return port, stop
