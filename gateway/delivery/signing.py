"""Webhook signatures: HMAC-SHA256 over the timestamp and the exact body bytes.

Headers on every webhook request:
  X-SPGW-Timestamp:  seconds since the epoch when the request was signed
  X-SPGW-Signature:  v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
  X-SPGW-Packet-Id:  the packet id (receivers de-duplicate on it: delivery is at least once)
A receiver recomputes the HMAC with its secret, compares in constant time, and refuses a
timestamp older than its tolerance (5 minutes by default) so a captured request cannot be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-SPGW-Timestamp"
SIGNATURE_HEADER = "X-SPGW-Signature"
PACKET_ID_HEADER = "X-SPGW-Packet-Id"
DEFAULT_TOLERANCE = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, packet_id: str, *, now: float | None = None) -> dict[str, str]:
    """Returns the headers that sign `body` for a webhook receiver."""
    timestamp = int(now if now is not None else time.time())
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        PACKET_ID_HEADER: packet_id,
    }


def verify(
    secret: str, body: bytes, headers: dict[str, str], *, now: float | None = None, tolerance: int = DEFAULT_TOLERANCE
) -> bool:
    """Returns True when the signature is ours for this body and the timestamp is fresh (receiver side)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ts = lowered.get(TIMESTAMP_HEADER.lower(), "")
    given = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not raw_ts.isdigit():
        return False
    timestamp = int(raw_ts)
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(given, signature(secret, timestamp, body))
