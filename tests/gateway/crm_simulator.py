"""A VCSE CRM simulator: a small threaded HTTP server on 127.0.0.1 that receives the gateway's
signed webhooks the way a real CRM should (docs/vcse-api.md).

It verifies the HMAC signature with its secret (401 for a bad or stale one), de-duplicates on
X-SPGW-Packet-Id (delivery is at least once), records every request it saw, and can act on a
referral packet as a CRM would: accept it through the gateway's VCSE API with its own token.

Used by the end-to-end and crash tests; reusable by anyone who needs a receiver on loopback.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx

from gateway.delivery.signing import PACKET_ID_HEADER, verify
from tests.support.loopback_server import LoopbackServer


@dataclass
class Received:
    """One webhook request the simulator accepted (duplicates included)."""

    packet_id: str
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]


@dataclass
class CrmState:
    """What the simulator saw, guarded by one lock (handlers run on several threads)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    received: list[Received] = field(default_factory=list)
    packets: dict[str, Received] = field(default_factory=dict)  # de-duplicated on packet id
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # referral ids accepted through the gateway


class CrmSimulator(LoopbackServer):
    path = "/webhook"

    """Starts on a port the OS chooses; `url` is the webhook URL to register for the host.

    `secret` may be set after start (the admin API shows the webhook secret only once, in the
    answer that registers the webhook URL, which needs this server's port first).
    `delay` makes every request slow (seconds), `gateway_url` + `token` make it accept referrals.
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        delay: float = 0.0,
        gateway_url: str | None = None,
        token: Callable[[], str] | None = None,
    ) -> None:
        self.secret = secret
        self.delay = delay
        self.gateway_url = gateway_url
        self.token = token
        self.state = CrmState()
        super().__init__("crm-simulator")

    # --- what the tests read ---

    def received_ids(self) -> list[str]:
        """Every packet id received, duplicates included, in arrival order."""
        with self.state.lock:
            return [r.packet_id for r in self.state.received]

    def distinct(self) -> dict[str, Received]:
        with self.state.lock:
            return dict(self.state.packets)

    # --- the receiver ---

    def _receive(self, raw: bytes, headers: dict[str, str]) -> int:
        """Returns the HTTP status to answer a webhook request with."""
        if self.delay:
            time.sleep(self.delay)
        if self.secret is None or not verify(self.secret, raw, headers):
            with self.state.lock:
                self.state.refused += 1
            return 401
        packet_id = {k.lower(): v for k, v in headers.items()}.get(PACKET_ID_HEADER.lower(), "")
        try:
            body = json.loads(raw)
        except ValueError:
            return 400
        item = Received(packet_id, body, raw, headers)
        with self.state.lock:
            self.state.received.append(item)
            first_time = packet_id not in self.state.packets
            if first_time:
                self.state.packets[packet_id] = item
        if first_time and body.get("kind") == "referral" and self.gateway_url and self.token:
            # A CRM answers the webhook at once and works on the referral afterwards.
            threading.Thread(target=self._accept, args=(body["referral_id"],), daemon=True).start()
        # A duplicate is acknowledged like the first copy, so the sender stops resending it.
        return 200

    def _accept(self, referral_id: str) -> None:
        assert self.gateway_url and self.token
        try:
            response = httpx.post(
                f"{self.gateway_url}/vcse/v1/referrals/{referral_id}/status",
                json={"status": "accepted"},
                headers={"Authorization": f"Bearer {self.token()}"},
                timeout=30,
            )
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:300]}")
        except Exception as exc:
            with self.state.lock:
                self.state.errors.append(f"accepting {referral_id}: {exc}")
            return
        with self.state.lock:
            self.state.accepted.append(referral_id)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status = simulator._receive(raw, dict(self.headers.items()))
                answer = json.dumps({"status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: a test's output stays readable."""

        return Handler
