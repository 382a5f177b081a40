"""Why a delivery failed, as one small tree: the worker's retry rule is a single isinstance.

DeliveryError
├── RetryableDeliveryError   the receiver may take it later: timeouts, connection errors,
│                            HTTP 408, 425, 429 and 5xx
└── PermanentDeliveryError   trying again cannot help: no endpoint configured, other 4xx
                             (the receiver refused this message as it is)
"""

from __future__ import annotations

RETRYABLE_STATUSES = frozenset({408, 425, 429})


class DeliveryError(Exception):
    """A delivery did not complete."""


class RetryableDeliveryError(DeliveryError):
    """The receiver may accept the same message later."""


class PermanentDeliveryError(DeliveryError):
    """The same message will never be accepted as it is."""


def for_status(status: int, target: str) -> DeliveryError:
    """Returns the error for a non-2xx HTTP answer."""
    text = f"{target} answered HTTP {status}"
    if status >= 500 or status in RETRYABLE_STATUSES:
        return RetryableDeliveryError(text)
    return PermanentDeliveryError(text)
