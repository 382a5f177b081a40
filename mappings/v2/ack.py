"""HL7 v2 general acknowledgement (ACK) in original acknowledgement mode (v2.5 ch. 2.9.2, 2.14).

    MSH  MSH-3/4 = original MSH-5/6, MSH-5/6 = original MSH-3/4, MSH-9 ACK^<trigger>^ACK,
         a new MSH-10, MSH-11 and MSH-12 as the original (2.5 when unknown or unsupported)
    MSA  MSA-1 AA/AE/AR, MSA-2 = original MSH-10 (read from the raw text when parsing failed),
         MSA-3 text (versions before 2.7, where MSA-3 still exists)
    ERR  for AE/AR. From 2.5: ERR-2 location SEG^seq^field, ERR-3 HL7 table 0357 code,
         ERR-4 severity E, ERR-8 user message. Before 2.5 ERR-1 (ELD) carries location and code.

The ACK is always written with the standard delimiters |^~\\& ; values echoed from the original
are unescaped with its delimiters and escaped again with ours, so they can never break the ACK.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Literal

from mappings.v2.parse import (
    ERR_INTERNAL,
    ERROR_TEXT,
    SUPPORTED_VERSIONS,
    Encoding,
    ParsedV2,
    V2Rejection,
    sniff_header,
    unescape,
)

OUR_ENCODING = Encoding()
DEFAULT_VERSION = "2.5"
# Our own MSH-3/MSH-4 when the original's MSH-5/MSH-6 cannot be read.
GATEWAY_APPLICATION = "SPGW"
_MAX_ECHO = 199  # ST values beyond this are cut (MSH-10 is ST(199) from v2.7)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def build_ack(
    original: ParsedV2 | None,
    code: Literal["AA", "AE", "AR"],
    text: str = "",
    error: V2Rejection | None = None,
    *,
    raw: bytes | None = None,
    now: datetime,
) -> str:
    """Returns the ACK as ER7 text (segments ending in CR).

    `original` is the parsed message, or None when parsing failed; then `raw` (the bytes as
    received) is read best-effort for MSH-3..6, MSH-10, MSH-11 and MSH-12. An AE/AR without
    `error` reports HL7 0357 code 207 (application internal error) with `text`.
    """
    header = _header_values(original, raw)
    version = header["version"]
    if code != "AA" and error is None:
        error = V2Rejection(code, None, None, text or ERROR_TEXT[ERR_INTERNAL], code=ERR_INTERNAL)
    message_text = text or (error.text if error else "")
    segments = [
        _msh(header, now, version, _digest(original, raw, code)),
        _msa(code, header["control_id"], message_text, version),
    ]
    if code != "AA" and error is not None:
        segments.append(_err(error, version))
    return "\r".join(segments) + "\r"


def _header_values(original: ParsedV2 | None, raw: bytes | None) -> dict[str, str]:
    """Returns the original's header values, already escaped for our delimiters."""
    if original is not None:
        msh, encoding = original.msh, original.encoding
        fields = {n: msh.first(n).raw for n in (3, 4, 5, 6)}
        version, trigger = original.version, original.trigger_event
        control_id, processing = original.control_id, original.processing_id
    else:
        fields, encoding = sniff_header(raw) if raw else ({}, OUR_ENCODING)
        version = unescape(fields.get(12, "").split(encoding.component)[0], encoding)
        trigger = unescape(_component(fields.get(9, ""), encoding, 2), encoding)
        control_id = unescape(fields.get(10, ""), encoding)
        processing = unescape(_component(fields.get(11, ""), encoding, 1), encoding)
    return {
        "sender_app": _reencode(fields.get(5, ""), encoding) or GATEWAY_APPLICATION,
        "sender_fac": _reencode(fields.get(6, ""), encoding) or GATEWAY_APPLICATION,
        "receiver_app": _reencode(fields.get(3, ""), encoding),
        "receiver_fac": _reencode(fields.get(4, ""), encoding),
        "version": version if version in SUPPORTED_VERSIONS else DEFAULT_VERSION,
        "trigger": trigger if re.fullmatch(r"[A-Z0-9]{3}", trigger) else "",
        "control_id": escape(_clean(control_id)),
        "processing": processing if processing in ("P", "T", "D") else "P",
    }


def _component(field: str, encoding: Encoding, number: int) -> str:
    parts = field.split(encoding.component)
    return parts[number - 1] if number <= len(parts) else ""


def _reencode(field: str, encoding: Encoding) -> str:
    """Returns an HD field (first repetition) rewritten from the original's delimiters to ours."""
    first = field.split(encoding.repetition)[0]
    components = []
    for component in first.split(encoding.component):
        subs = [escape(_clean(unescape(s, encoding))) for s in component.split(encoding.subcomponent)]
        components.append(OUR_ENCODING.subcomponent.join(subs))
    return OUR_ENCODING.component.join(components).rstrip(OUR_ENCODING.component)


def escape(value: str) -> str:
    """Returns `value` with our delimiters escaped (v2.5 ch. 2.7.1): escape character first."""
    e = OUR_ENCODING.escape
    value = value.replace(e, f"{e}E{e}")
    for char, letter in (
        (OUR_ENCODING.field, "F"),
        (OUR_ENCODING.component, "S"),
        (OUR_ENCODING.subcomponent, "T"),
        (OUR_ENCODING.repetition, "R"),
    ):
        value = value.replace(char, f"{e}{letter}{e}")
    return value


def _clean(value: str) -> str:
    """Returns `value` without control characters and cut to a length every version accepts."""
    return _CONTROL.sub(" ", value).strip()[:_MAX_ECHO]


def _digest(original: ParsedV2 | None, raw: bytes | None, code: str) -> str:
    """Returns a hash of what is being acknowledged, the seed of the ACK's own MSH-10."""
    if raw is None and original is not None:
        raw = "\r".join(original.encoding.field.join(s.fields) for s in original.segments).encode()
    return hashlib.sha256((raw or b"") + code.encode()).hexdigest()


def _msh(header: dict[str, str], now: datetime, version: str, digest: str) -> str:
    moment = now if now.tzinfo else now.replace(tzinfo=UTC)
    timestamp = moment.strftime("%Y%m%d%H%M%S%z")
    # MSH-9 has a third component (message structure) from v2.3.1 on.
    message_type = f"ACK^{header['trigger']}" + ("" if version == "2.3" else "^ACK")
    # MSH-10 must be new; derived from the input and the time so that the function stays pure.
    control = "ACK" + hashlib.sha256(f"{digest}|{timestamp}".encode()).hexdigest()[:17].upper()
    fields = [
        "MSH",
        "^~\\&",
        header["sender_app"],
        header["sender_fac"],
        header["receiver_app"],
        header["receiver_fac"],
        timestamp,
        "",
        message_type,
        control,
        header["processing"],
        version,
    ]
    return "|".join(fields)


def _msa(code: str, control_id: str, text: str, version: str) -> str:
    fields = ["MSA", code, control_id]
    if text and version < "2.7":
        fields.append(escape(_clean(text)))  # MSA-3 text message, withdrawn in v2.7
    return "|".join(fields)


def _err(error: V2Rejection, version: str) -> str:
    code = error.code if error.code in ERROR_TEXT else ERR_INTERNAL
    text = escape(_clean(error.text))
    location = [error.segment or "", str(error.sequence) if error.segment else ""]
    if error.segment and error.field:
        location.append(str(error.field))
        if error.component:
            location += ["1", str(error.component)]
    if version < "2.5":
        # ERR-1 (ELD): segment ID ^ sequence ^ field position ^ code&text&HL70357 (v2.3/2.4 ch. 2.16.5).
        eld = location + [""] * (3 - len(location))
        return "ERR|" + "^".join([*eld[:3], f"{code}&{ERROR_TEXT[code]}&HL70357"])
    erl = "^".join(location) if error.segment else ""
    fields = ["ERR", "", erl, f"{code}^{ERROR_TEXT[code]}^HL70357", "E", "", "", "", text]
    return "|".join(fields)
