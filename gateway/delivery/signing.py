"""Webhook signatures: the Standard Webhooks scheme (standardwebhooks.com), and for one release the
older X-SPGW-* headers beside it.

Standard Webhooks headers (what a CRM verifies with a stock library, e.g. `standardwebhooks` on PyPI):
  webhook-id:         the packet id (receivers de-duplicate on it: delivery is at least once)
  webhook-timestamp:  seconds since the epoch when the request was signed
  webhook-signature:  v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>." + body)>
where key = base64-decode(the secret without its "whsec_" prefix). The signature covers the id, so a
captured body cannot be replayed under another id.

Deprecated (kept one release, see docs/vcse-api.md):
  X-SPGW-Timestamp, X-SPGW-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>, X-SPGW-Packet-Id
A receiver recomputes the HMAC with its secret, compares in constant time, and refuses a
timestamp older than its tolerance (5 minutes by default) so a captured request cannot be replayed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

TIMESTAMP_HEADER = "X-SPGW-Timestamp"
SIGNATURE_HEADER = "X-SPGW-Signature"
PACKET_ID_HEADER = "X-SPGW-Packet-Id"
DEFAULT_TOLERANCE = 300
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)


def new_secret() -> str:
    """Returns a new signing secret in the Standard Webhooks form: whsec_ + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def standard_key(secret: str) -> bytes:
    """Returns the HMAC key a Standard Webhooks library derives from the secret (base64 after the prefix,
    non-alphabet characters skipped, as the reference implementation does)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(standard_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, packet_id: str, *, now: float | None = None) -> dict[str, str]:
    """Returns the headers that sign `body` for a webhook receiver."""
    timestamp = int(now if now is not None else time.time())
    headers = {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        PACKET_ID_HEADER: packet_id,
    }
    try:
        standard = standard_signature(secret, packet_id, timestamp, body)
    except (binascii.Error, ValueError):
        return headers  # a secret from before Standard Webhooks that is not base64: rotate it
    return {WEBHOOK_ID: packet_id, WEBHOOK_TIMESTAMP: str(timestamp), WEBHOOK_SIGNATURE: standard, **headers}


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
