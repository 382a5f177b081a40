"""An asyncio MLLP listener: one HL7 v2 message in, one ACK out, in order, per connection.

    client ──SB msg EB CR──▶ MllpDecoder ──msg──▶ handler(msg, peer) ──ack──▶ frame ──▶ client

The handler gets each complete message without framing, plus the peer address, and returns the
ACK without framing. The listener never dies because of what a client sends or what the handler
does: an oversized block gets an AR ACK and the connection is closed; a handler exception gets
an AR ACK with ERR-3 207 (application internal error) and the connection stays open; a block cut
short by the client closing is dropped quietly; a connection idle for `idle_timeout` seconds is
closed. Logs carry error types and peers, never message content (it identifies patients).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from mappings.v2.ack import build_ack
from mappings.v2.framing import MllpDecoder, MllpMessageTooLarge, frame
from mappings.v2.parse import ERR_INTERNAL, V2Rejection

log = logging.getLogger(__name__)

Handler = Callable[[bytes, str], Awaitable[bytes]]
_READ_SIZE = 64 * 1024


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
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Starts listening; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
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
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peer = _peer(writer)
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

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        decoder = MllpDecoder(self.max_message_bytes)
        while True:
            try:
                data = await asyncio.wait_for(reader.read(_READ_SIZE), self.idle_timeout)
            except TimeoutError:
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
                await self._send(writer, _refusal(too_large.head, str(too_large)))
                return
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


def _peer(writer: asyncio.StreamWriter) -> str:
    address = writer.get_extra_info("peername")
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address or "unknown")


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
