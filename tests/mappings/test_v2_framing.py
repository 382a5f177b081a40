"""MLLP de-framing and segment separator normalisation."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.v2.framing import MllpDecoder, MllpMessageTooLarge, frame, normalise_segments, unframe


def test_frame_wraps_in_start_and_end_block() -> None:
    assert frame(b"MSH|x") == b"\x0bMSH|x\x1c\x0d"


def test_several_messages_in_one_chunk_come_out_in_order() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(frame(b"one") + frame(b"two") + frame(b"three")) == [b"one", b"two", b"three"]
    assert decoder.pending == 0


def test_message_split_across_chunks_is_reassembled() -> None:
    decoder = MllpDecoder()
    data = frame(b"MSH|^~\\&|A\rPID|1")
    out = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
    assert out == [b"MSH|^~\\&|A\rPID|1"]


def test_end_block_split_between_chunks_is_found() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"\x0babc\x1c") == []
    assert decoder.feed(b"\x0d") == [b"abc"]


def test_file_separator_not_followed_by_cr_is_content() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"\x0ba\x1cb\x1c\x0d") == [b"a\x1cb"]


def test_junk_before_start_block_is_discarded() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"GET / HTTP/1.1\r\n\r\n" + frame(b"msg")) == [b"msg"]
    assert decoder.feed(b"trailing junk") == []
    assert decoder.pending == 0


def test_new_start_block_inside_a_block_drops_the_truncated_message() -> None:
    decoder = MllpDecoder()
    assert decoder.feed(b"\x0bhalf a mess") == []
    assert decoder.feed(b"age\x0bwhole\x1c\x0d") == [b"whole"]


def test_oversized_block_raises_with_head_and_earlier_messages() -> None:
    decoder = MllpDecoder(max_message_bytes=10)
    with pytest.raises(MllpMessageTooLarge) as caught:
        decoder.feed(frame(b"ok") + b"\x0b" + b"MSH|" + b"x" * 20)
    assert caught.value.completed == [b"ok"]
    assert caught.value.head.startswith(b"MSH|")
    assert "10-byte limit" in str(caught.value)
    # The decoder resynchronises on the next block.
    assert decoder.feed(frame(b"next")) == [b"next"]


def test_oversized_block_is_refused_even_when_it_arrives_whole() -> None:
    decoder = MllpDecoder(max_message_bytes=4)
    with pytest.raises(MllpMessageTooLarge):
        decoder.feed(frame(b"12345"))


def test_block_of_exactly_the_limit_is_accepted() -> None:
    assert MllpDecoder(max_message_bytes=5).feed(frame(b"12345")) == [b"12345"]


def test_non_positive_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        MllpDecoder(max_message_bytes=0)


def test_normalise_segments_turns_lf_and_crlf_into_cr() -> None:
    assert normalise_segments("MSH|a\r\nPID|b\nNTE|c\r") == "MSH|a\rPID|b\rNTE|c\r"


def test_unframe_strips_one_mllp_block_for_http_bodies() -> None:
    assert unframe(frame(b"MSH|a\rPID|b")) == b"MSH|a\rPID|b"
    assert unframe(b"MSH|a") == b"MSH|a"


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(st.binary(max_size=50).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b"")),
                         max_size=5),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_chunking_yields_the_same_messages(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(m) for m in messages)
    points = sorted({c for c in cuts if c < len(stream)} | {0, len(stream)})
    decoder = MllpDecoder()
    out = []
    for a, b in itertools.pairwise(points):
        out += decoder.feed(stream[a:b])
    assert out == messages
