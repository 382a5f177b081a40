"""MLLP framing and segment separators: bytes on the wire to HL7 v2 message text, and back.

The Minimal Lower Layer Protocol (HL7 v2.5.1 Implementation Guide: Transport Specification MLLP,
release 2) wraps each message in a block:

    <SB> message bytes <EB><CR>      SB = 0x0B (VT), EB = 0x1C (FS), CR = 0x0D

The decoder is a small state machine fed whatever `recv` returns: several messages in one
chunk, one message spread over many chunks, and bytes outside a block (which MLLP does not
allow and which we discard) all come out as whole messages, in order. Memory stays bounded:
bytes outside a block are never kept, and a block longer than the limit is refused.
"""

from __future__ import annotations

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"

# How much of a refused message we keep so that the AR ACK can still echo MSH-10.
HEAD_BYTES = 4096


class MllpMessageTooLarge(Exception):
    """A block grew past the size limit before its end block arrived.

    `head` holds the first bytes of the refused message (enough for its MSH segment) and
    `completed` the messages that were whole before it in the same chunk, to be answered first.
    """

    def __init__(self, limit: int, head: bytes, completed: list[bytes]) -> None:
        super().__init__(f"MLLP message exceeds the {limit}-byte limit")
        self.limit = limit
        self.head = head
        self.completed = completed


class MllpDecoder:
    """Incremental MLLP de-framer: `feed` bytes, get back the messages completed by them."""

    def __init__(self, max_message_bytes: int = 1 << 20) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._in_block = False

    @property
    def in_message(self) -> bool:
        """Returns True between a start block and its end (a message is being received)."""
        return self._in_block

    @property
    def pending(self) -> int:
        """Returns how many bytes of an unfinished block are held (0 between blocks)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Returns the complete messages (without framing) that `data` finishes, in arrival order.

        Raises MllpMessageTooLarge when a block passes `max_message_bytes`; the decoder then
        discards that block (and the rest of `data`) and resynchronises on the next start block.
        """
        messages: list[bytes] = []
        pos = 0
        while pos < len(data):
            if self._in_block:
                pos = self._take(data, pos, messages)
                continue
            start = data.find(START_BLOCK, pos)
            if start < 0:
                break  # bytes between blocks are not HL7: drop them
            pos = start + 1
            self._in_block = True
        return messages

    def _take(self, data: bytes, pos: int, messages: list[bytes]) -> int:
        """Adds data[pos:] to the open block up to its end; returns the position after what was used."""
        if self._buffer.endswith(END_BLOCK[:1]) and data.startswith(END_BLOCK[1:], pos):
            # The end block straddled two chunks: 0x1C ended the last one, 0x0D starts this one.
            del self._buffer[-1]
            self._complete(messages)
            return pos + 1
        end = data.find(END_BLOCK, pos)
        restart = data.find(START_BLOCK, pos)
        if restart >= 0 and (end < 0 or restart < end):
            # A start block inside a block: the sender gave up on the earlier message. Drop it
            # and read the new one (0x0B cannot occur inside HL7 content).
            self._buffer.clear()
            return restart + 1
        if end < 0:
            self._buffer += data[pos:]
            self._check_size(messages)
            return len(data)
        self._buffer += data[pos:end]
        self._complete(messages)
        return end + len(END_BLOCK)

    def _complete(self, messages: list[bytes]) -> None:
        self._check_size(messages)
        messages.append(bytes(self._buffer))
        self._buffer.clear()
        self._in_block = False

    def _check_size(self, messages: list[bytes]) -> None:
        if len(self._buffer) <= self.max_message_bytes:
            return
        head = bytes(self._buffer[:HEAD_BYTES])
        self._buffer.clear()
        self._in_block = False
        raise MllpMessageTooLarge(self.max_message_bytes, head, messages)


def frame(message: bytes) -> bytes:
    """Returns `message` wrapped in an MLLP block (SB ... EB CR)."""
    return START_BLOCK + message + END_BLOCK


def unframe(data: bytes) -> bytes:
    """Returns `data` without one surrounding MLLP block, if it carries one (for HTTP bodies)."""
    stripped = data.strip(b" \t\r\n")
    if stripped.startswith(START_BLOCK):
        stripped = stripped[1:]
    if stripped.endswith(b"\x1c"):
        stripped = stripped[:-1]
    return stripped


def normalise_segments(text: str) -> str:
    """Returns `text` with CR LF and LF segment separators turned into CR.

    HL7 v2 (2.5 ch. 2.5.3) ends every segment with CR; hl7apy given LF parses the MSH alone
    and silently drops every other segment (hl7apy 1.3.5, checked: docs/hl7v2.md).
    """
    return text.replace("\r\n", "\r").replace("\n", "\r")
