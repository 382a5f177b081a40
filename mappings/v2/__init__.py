"""HL7 v2 ingest: REF^I12/I13/I14 bytes to a FHIR message Bundle, or the reason for an AE/AR ACK.

    raw bytes --parse_message--> ParsedV2 --ref_to_bundle--> Bundle (dict)
         |                          |
         +--- V2Rejection AR -------+--- V2Rejection AE ---> build_ack(...) -> ACK text

`process_v2` runs both steps and never raises; the gateway then runs the same profile checks
and pipeline as for a FHIR `$process-message`, and answers with `build_ack` (AA, or AE when the
pipeline refuses). See docs/hl7v2.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mappings.v2.ack import build_ack
from mappings.v2.parse import ERR_INTERNAL, ParsedV2, V2Rejection, parse_message, sniff_header, unescape
from mappings.v2.to_fhir import ref_to_bundle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class V2Outcome:
    """What became of one v2 message: the ACK code so far and, when it can go on, its Bundle."""

    ack_code: Literal["AA", "AE", "AR"]
    parsed: ParsedV2 | None
    bundle: dict[str, Any] | None  # only when ack_code is AA
    rejection: V2Rejection | None
    control_id: str | None  # MSH-10, best effort when the message did not parse
    sender: tuple[str, str] | None  # (MSH-3, MSH-4), best effort likewise


def process_v2(raw: bytes, *, now: datetime) -> V2Outcome:
    """Returns the outcome of parsing and mapping `raw`; never raises, whatever the bytes."""
    try:
        parsed = parse_message(raw)
    except V2Rejection as rejection:
        return _refused(rejection, None, raw)
    except Exception as exc:  # a parser bug must become an AR, never a dropped connection
        log.error("HL7 v2 parser failed unexpectedly: %s", type(exc).__name__)
        return _refused(_internal(), None, raw)
    try:
        bundle = ref_to_bundle(parsed, received_at=now)
    except V2Rejection as rejection:
        return _refused(rejection, parsed, raw)
    except Exception as exc:  # likewise for a mapping bug
        log.error("HL7 v2 to FHIR mapping failed unexpectedly: %s", type(exc).__name__)
        return _refused(_internal(), parsed, raw)
    return V2Outcome(
        "AA", parsed, bundle, None, parsed.control_id, (parsed.sending_application, parsed.sending_facility)
    )


def ack_for(outcome: V2Outcome, raw: bytes, *, now: datetime, text: str = "") -> str:
    """Returns the ACK for `outcome` as it stands (AA, or its AE/AR with the ERR segment)."""
    return build_ack(outcome.parsed, outcome.ack_code, text, outcome.rejection, raw=raw, now=now)


def _internal() -> V2Rejection:
    return V2Rejection("AR", None, None, "The message could not be processed.", code=ERR_INTERNAL)


def _refused(rejection: V2Rejection, parsed: ParsedV2 | None, raw: bytes) -> V2Outcome:
    if parsed is not None:
        return V2Outcome(
            rejection.ack_code,
            parsed,
            None,
            rejection,
            parsed.control_id,
            (parsed.sending_application, parsed.sending_facility),
        )
    fields, encoding = sniff_header(raw)
    if not fields:
        return V2Outcome(rejection.ack_code, None, None, rejection, None, None)
    control_id = unescape(fields.get(10, ""), encoding) or None
    first = [unescape(fields.get(n, "").split(encoding.component)[0], encoding) for n in (3, 4)]
    return V2Outcome(rejection.ack_code, None, None, rejection, control_id, (first[0], first[1]))


__all__ = ["ParsedV2", "V2Outcome", "V2Rejection", "ack_for", "build_ack", "process_v2"]
