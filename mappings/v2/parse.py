"""HL7 v2 ER7 text to a `ParsedV2`, or a `V2Rejection` that says what the ACK must report.

hl7apy parses and checks the message (segment names known to the message's version, encoding
characters, MSH-12); the values are then read from the raw segment list, not from hl7apy's
tree, because hl7apy drops fields its version table lacks (EVN-1 in a 2.8 message), gives
fields beyond the table no name, and leaves escape sequences undecoded.

Rejections follow HL7 v2.5 ch. 2.9 (original acknowledgement mode): a message we cannot read,
or whose header names a message type, event or version we do not handle, is rejected (AR);
a message we can read but whose content is wrong is an application error (AE). Error codes are
HL7 table 0357. Texts name the segment and field, never a value: ACK texts end up in logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import hl7apy
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message as hl7apy_parse_message
from hl7apy.parser import parse_segment as hl7apy_parse_segment

from mappings.v2.framing import normalise_segments, unframe

# HL7 table 0357 (Message error condition codes).
ERR_SEGMENT_SEQUENCE = "100"
ERR_REQUIRED_FIELD_MISSING = "101"
ERR_DATA_TYPE = "102"
ERR_TABLE_VALUE_NOT_FOUND = "103"
ERR_UNSUPPORTED_MESSAGE_TYPE = "200"
ERR_UNSUPPORTED_EVENT_CODE = "201"
ERR_UNSUPPORTED_VERSION = "203"
ERR_UNKNOWN_KEY = "204"
ERR_DUPLICATE_KEY = "205"
ERR_INTERNAL = "207"

ERROR_TEXT = {
    ERR_SEGMENT_SEQUENCE: "Segment sequence error",
    ERR_REQUIRED_FIELD_MISSING: "Required field missing",
    ERR_DATA_TYPE: "Data type error",
    ERR_TABLE_VALUE_NOT_FOUND: "Table value not found",
    ERR_UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ERR_UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    ERR_UNSUPPORTED_VERSION: "Unsupported version id",
    ERR_UNKNOWN_KEY: "Unknown key identifier",
    ERR_DUPLICATE_KEY: "Duplicate key identifier",
    ERR_INTERNAL: "Application internal error",
}

# REF^I12 (new referral), I13 (modify), I14 (cancel): HL7 v2.5 ch. 11.3, all on structure REF_I12.
SUPPORTED_TRIGGERS = ("I12", "I13", "I14")
# HL7 v2 versions hl7apy can parse, from 2.3 up (2.1 and 2.2 lack REF^I12 as we read it).
SUPPORTED_VERSIONS = tuple(
    v
    for v in ("2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8", "2.8.1", "2.8.2")
    if v in hl7apy.SUPPORTED_LIBRARIES
)

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
# C0 controls other than CR (segment terminator) and TAB have no place in ER7 text (v2.5 ch. 2.7).
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x0c\x0e-\x1f\x7f]")


class V2Rejection(Exception):
    """Why a v2 message was refused: the ACK code and the ERR segment's content.

    `segment`/`field` locate the error (ERR-2, e.g. 'PID', 3); either may be None when the error
    is not tied to one. `code` is the HL7 table 0357 condition code (ERR-3).
    """

    def __init__(
        self,
        ack_code: Literal["AE", "AR"],
        segment: str | None,
        field: int | None,
        text: str,
        *,
        code: str = ERR_REQUIRED_FIELD_MISSING,
        sequence: int = 1,
        component: int | None = None,
    ) -> None:
        super().__init__(text)
        self.ack_code: Literal["AE", "AR"] = ack_code
        self.segment = segment
        self.field = field
        self.text = text
        self.code = code
        self.sequence = sequence
        self.component = component

    @property
    def location(self) -> str:
        """Returns the error location as people write it: 'PID-3', 'RF1', or ''."""
        if not self.segment:
            return ""
        return f"{self.segment}-{self.field}" if self.field else self.segment


@dataclass(frozen=True)
class Encoding:
    """The delimiters a message declares in MSH-1 and MSH-2 (v2.5 ch. 2.5.4)."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


@dataclass(frozen=True)
class V2Value:
    """One repetition of a field, still in ER7, with readers that split and unescape it."""

    raw: str
    encoding: Encoding

    def component(self, number: int, sub: int = 1) -> str:
        """Returns component `number` (1-based), subcomponent `sub`, unescaped and trimmed; '' when absent."""
        parts = self.raw.split(self.encoding.component)
        if number > len(parts):
            return ""
        subs = parts[number - 1].split(self.encoding.subcomponent)
        # Padding spaces carry no meaning in the fields we read, and FHIR strings and codes forbid them.
        return unescape(subs[sub - 1], self.encoding).strip() if sub <= len(subs) else ""

    def text(self) -> str:
        """Returns the whole repetition unescaped and trimmed (for ST, TX and FT fields, which have no components)."""
        return unescape(self.raw, self.encoding).strip()

    def __bool__(self) -> bool:
        return bool(self.raw.strip())


@dataclass(frozen=True)
class V2Segment:
    """One segment: its name, its 1-based occurrence (ERR-2.2) and its raw fields."""

    name: str
    sequence: int
    fields: tuple[str, ...]  # fields[n] is field n in ER7; for MSH, fields[1] is MSH-1 itself
    encoding: Encoding

    def get(self, number: int) -> list[V2Value]:
        """Returns the non-empty repetitions of field `number`."""
        raw = self.fields[number] if number < len(self.fields) else ""
        # MSH-1 and MSH-2 hold the delimiters themselves, so they are never split.
        reps = [raw] if self.name == "MSH" and number in (1, 2) else raw.split(self.encoding.repetition)
        return [value for value in (V2Value(r, self.encoding) for r in reps) if value]

    def first(self, number: int) -> V2Value:
        """Returns the first repetition of field `number` (empty when absent)."""
        reps = self.get(number)
        return reps[0] if reps else V2Value("", self.encoding)


@dataclass(frozen=True)
class ParsedV2:
    """A parsed REF^I12/I13/I14 message: its MSH header values and its segments in order."""

    message: Message  # hl7apy's view, kept for callers who want its structure
    segments: tuple[V2Segment, ...]
    encoding: Encoding
    sending_application: str  # MSH-3 (HD.1, else HD.2)
    sending_facility: str  # MSH-4
    receiving_application: str  # MSH-5
    receiving_facility: str  # MSH-6
    timestamp: str  # MSH-7, ER7 TS/DTM text
    message_code: str  # MSH-9.1
    trigger_event: str  # MSH-9.2
    control_id: str  # MSH-10
    processing_id: str  # MSH-11.1
    version: str  # MSH-12.1

    @property
    def msh(self) -> V2Segment:
        return self.segments[0]

    def segment(self, name: str) -> V2Segment | None:
        """Returns the first segment called `name`, or None."""
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> list[V2Segment]:
        """Returns every segment called `name`, in message order."""
        return [s for s in self.segments if s.name == name]


def decode(raw: bytes | str) -> str:
    """Returns message text: UTF-8 (without a BOM) when it decodes, else ISO 8859-1, which always does."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_message(raw: bytes | str) -> ParsedV2:
    """Returns the parsed message. Raises V2Rejection (AR or AE) saying why it cannot be used."""
    text = normalise_segments(decode(unframe(raw) if isinstance(raw, bytes) else raw)).strip()
    if not text.startswith("MSH"):
        raise V2Rejection(
            "AR", "MSH", None, "The message does not start with an MSH segment.", code=ERR_SEGMENT_SEQUENCE
        )
    encoding = _read_encoding(text)
    lines = [line for line in text.split("\r") if line.strip()]
    segments = _split_segments(lines, encoding)
    msh = segments[0]
    _check_header(msh)
    message = _hl7apy_parse(lines, encoding)
    if len(message.children) != len(lines) or len(lines) < 2:
        raise V2Rejection(
            "AR", None, None, "The message has no segments after MSH that could be read.", code=ERR_SEGMENT_SEQUENCE
        )
    return ParsedV2(
        message=message,
        segments=segments,
        encoding=encoding,
        sending_application=_hd(msh.first(3)),
        sending_facility=_hd(msh.first(4)),
        receiving_application=_hd(msh.first(5)),
        receiving_facility=_hd(msh.first(6)),
        timestamp=msh.first(7).component(1),
        message_code=msh.first(9).component(1),
        trigger_event=msh.first(9).component(2),
        control_id=msh.first(10).text(),
        processing_id=msh.first(11).component(1),
        version=msh.first(12).component(1),
    )


def _read_encoding(text: str) -> Encoding:
    """Returns MSH-1/MSH-2's delimiters; raises AR when they are missing, repeated or alphanumeric."""
    sep = text[3:4]
    chars = text[4:].split(sep, 1)[0] if sep else ""
    bad = (
        not sep
        or sep.isalnum()
        or sep.isspace()
        or len(chars) not in (4, 5)
        or len(set(chars + sep)) != len(chars) + 1
        or any(c.isalnum() or c.isspace() for c in chars)
    )
    if bad:
        raise V2Rejection(
            "AR",
            "MSH",
            2,
            "MSH-1/MSH-2 do not declare five distinct, non-alphanumeric delimiters (expected |^~\\&).",
            code=ERR_DATA_TYPE,
        )
    # The fifth character of a 2.7+ MSH-2 is the truncation character, which needs no handling here.
    return Encoding(field=sep, component=chars[0], repetition=chars[1], escape=chars[2], subcomponent=chars[3])


def _split_segments(lines: list[str], encoding: Encoding) -> tuple[V2Segment, ...]:
    """Returns the segments; raises AR for a bad segment ID, a second MSH or control characters."""
    seen: dict[str, int] = {}
    segments = []
    for position, line in enumerate(lines, start=1):
        name = line[:3]
        if not _SEGMENT_ID.fullmatch(name) or line[3:4] not in ("", encoding.field):
            raise V2Rejection(
                "AR",
                None,
                None,
                f"Segment {position} does not start with a segment ID "
                "(three capitals or digits) and the field separator.",
                code=ERR_SEGMENT_SEQUENCE,
            )
        if name == "MSH" and position > 1:
            raise V2Rejection(
                "AR",
                "MSH",
                None,
                "Only one message per request: batches and a second MSH are not accepted.",
                code=ERR_SEGMENT_SEQUENCE,
                sequence=seen.get(name, 0) + 1,
            )
        seen[name] = seen.get(name, 0) + 1
        if _CONTROL_CHARS.search(line):
            raise V2Rejection(
                "AR",
                name,
                None,
                f"Segment {name} contains control characters, which ER7 text may not carry.",
                code=ERR_DATA_TYPE,
                sequence=seen[name],
            )
        fields = line.split(encoding.field)
        if name == "MSH":
            fields.insert(1, encoding.field)  # MSH-1 is the field separator itself (v2.5 ch. 2.14.9.1)
        segments.append(V2Segment(name, seen[name], tuple(fields), encoding))
    return tuple(segments)


def _check_header(msh: V2Segment) -> None:
    """Raises AR unless MSH-10, MSH-12 and MSH-9 name a message we handle (v2.5 ch. 2.9.2)."""
    if not msh.first(10).text().strip():
        raise V2Rejection(
            "AR", "MSH", 10, "MSH-10 (message control ID) is empty, so the message cannot be acknowledged."
        )
    version = msh.first(12).component(1)
    if version not in SUPPORTED_VERSIONS:
        raise V2Rejection(
            "AR",
            "MSH",
            12,
            f"MSH-12 names a version this gateway does not read (supported: {', '.join(SUPPORTED_VERSIONS)}).",
            code=ERR_UNSUPPORTED_VERSION,
        )
    code, event = msh.first(9).component(1), msh.first(9).component(2)
    if code != "REF":
        raise V2Rejection(
            "AR",
            "MSH",
            9,
            "MSH-9 names a message type this gateway does not handle (only REF, events I12, I13 and I14).",
            code=ERR_UNSUPPORTED_MESSAGE_TYPE,
        )
    if event not in SUPPORTED_TRIGGERS:
        raise V2Rejection(
            "AR",
            "MSH",
            9,
            "MSH-9.2 names a trigger event this gateway does not handle (only I12, I13 and I14).",
            code=ERR_UNSUPPORTED_EVENT_CODE,
            component=2,
        )


def _hl7apy_parse(lines: list[str], encoding: Encoding) -> Message:
    """Returns hl7apy's Message; raises AR naming the first segment hl7apy cannot read."""
    text = "\r".join(lines)
    try:
        # find_groups=False keeps Z-segments and segments in an unexpected order (hl7apy 1.3.5, checked).
        return hl7apy_parse_message(text, validation_level=VALIDATION_LEVEL.QUIET, find_groups=False)
    except (HL7apyException, ValueError) as exc:
        segment = _first_unreadable(lines, encoding)
        raise V2Rejection(
            "AR",
            segment,
            None,
            f"The message could not be parsed as HL7 v2 ER7 "
            f"({type(exc).__name__}{' in segment ' + segment if segment else ''}).",
            code=ERR_SEGMENT_SEQUENCE,
        ) from None


def _first_unreadable(lines: list[str], encoding: Encoding) -> str | None:
    """Returns the name of the first segment hl7apy refuses on its own, if any."""
    chars = {
        "FIELD": encoding.field,
        "COMPONENT": encoding.component,
        "REPETITION": encoding.repetition,
        "ESCAPE": encoding.escape,
        "SUBCOMPONENT": encoding.subcomponent,
        "SEGMENT": "\r",
        "GROUP": "\r",
    }
    version = V2Segment("MSH", 1, tuple(_fields_of_msh(lines[0], encoding)), encoding).first(12).component(1)
    for line in lines[1:]:
        try:
            hl7apy_parse_segment(line, version=version, encoding_chars=chars, validation_level=VALIDATION_LEVEL.QUIET)
        except (HL7apyException, ValueError):
            return line[:3]
    return None


def _fields_of_msh(line: str, encoding: Encoding) -> list[str]:
    fields = line.split(encoding.field)
    fields.insert(1, encoding.field)
    return fields


def _hd(value: V2Value) -> str:
    """Returns an HD's namespace ID (HD.1), else its universal ID (HD.2)."""
    return value.component(1) or value.component(2)


_ESCAPES = {"F": "field", "S": "component", "T": "subcomponent", "R": "repetition", "E": "escape"}


def unescape(text: str, encoding: Encoding) -> str:
    """Returns `text` with HL7 escape sequences decoded (v2.5 ch. 2.7).

    \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ become the delimiters; \\.br\\ and \\.sp\\ become line breaks; \\Xhh..\\
    becomes the bytes it spells (UTF-8, else ISO 8859-1); highlighting (\\H\\, \\N\\) and other formatting
    commands are dropped. A sequence we do not know is left as written.
    """
    esc = encoding.escape
    if esc not in text:
        return text
    pattern = re.compile(re.escape(esc) + r"([^" + re.escape(esc) + r"\r]*)" + re.escape(esc))
    return pattern.sub(lambda m: _decode_escape(m.group(1), m.group(0), encoding), text)


def _decode_escape(body: str, whole: str, encoding: Encoding) -> str:
    if body in _ESCAPES:
        return str(getattr(encoding, _ESCAPES[body]))
    if body in ("H", "N"):
        return ""
    if body == ".br" or body.startswith(".sp"):
        return "\n"
    if body[:3] in (".fi", ".nf", ".in", ".ti", ".sk", ".ce"):
        return ""
    if body.startswith("X") and len(body) > 1 and len(body) % 2 == 1:
        try:
            data = bytes.fromhex(body[1:])
        except ValueError:
            return whole
        return decode(data)
    return whole


def sniff_header(raw: bytes | str) -> tuple[dict[int, str], Encoding]:
    """Returns MSH fields 3-12 as written and the delimiters, read without validation, for an ACK.

    Used when parsing failed, so that the ACK can still echo MSH-10 (MSA-2) and address the
    sender. The fields are {} when the text does not start with MSH and a field separator; the
    delimiters are the standard ones wherever MSH-1/MSH-2 are unusable.
    """
    text = normalise_segments(decode(unframe(raw) if isinstance(raw, bytes) else raw)).lstrip()
    if not text.startswith("MSH") or len(text) < 4 or text[3].isalnum() or text[3] in "\r ":
        return {}, Encoding()
    try:
        encoding = _read_encoding(text)
    except V2Rejection:
        encoding = Encoding(field=text[3])  # the other delimiters are a guess: the standard ones
    fields = _fields_of_msh(text.split("\r", 1)[0], encoding)
    return {n: fields[n] for n in range(3, 13) if n < len(fields) and fields[n]}, encoding
