"""Parsing ER7 into ParsedV2, and the AR/AE rejections with their ERR location and 0357 code."""

from __future__ import annotations

import pytest

from mappings.v2.framing import frame
from mappings.v2.parse import Encoding, V2Rejection, parse_message, sniff_header, unescape
from tests.fixtures.hl7v2.messages import NHS, er7, ref_i12, replace_segment, segments


def rejection(raw: bytes | str) -> V2Rejection:
    with pytest.raises(V2Rejection) as caught:
        parse_message(raw)
    return caught.value


def test_contract_message_header_values_are_read() -> None:
    msg = parse_message(ref_i12())
    assert (msg.sending_application, msg.sending_facility) == ("HOSPPAS", "RX1")
    assert (msg.receiving_application, msg.receiving_facility) == ("SPGW", "SPGW")
    assert (msg.message_code, msg.trigger_event, msg.control_id) == ("REF", "I12", "BARSV2A1")
    assert (msg.timestamp, msg.processing_id, msg.version) == ("20261120103000", "P", "2.5")
    assert [s.name for s in msg.segments] == ["MSH", "RF1", "PRD", "PID", "NTE"]
    assert [c.name for c in msg.message.children] == ["MSH", "RF1", "PRD", "PID", "NTE"]


@pytest.mark.parametrize("separator", ["\n", "\r\n"])
def test_lf_and_crlf_line_endings_keep_every_segment(separator: str) -> None:
    msg = parse_message(er7(segments(), separator).encode())
    assert [s.name for s in msg.segments] == ["MSH", "RF1", "PRD", "PID", "NTE"]
    assert msg.segment("PID") is not None


def test_mllp_framed_bytes_are_accepted() -> None:
    assert parse_message(frame(ref_i12())).control_id == "BARSV2A1"


def test_latin1_bytes_fall_back_from_utf8() -> None:
    segs = replace_segment(segments(), "PID", f"PID|1||{NHS}^^^NHS^NH||Zoë^Chloé")
    msg = parse_message(er7(segs).encode("latin-1"))
    assert msg.segment("PID").first(5).component(1) == "Zoë"


def test_utf8_with_bom_is_read() -> None:
    segs = replace_segment(segments(), "PID", f"PID|1||{NHS}^^^NHS^NH||Ōtsuka^Zoë")
    msg = parse_message(b"\xef\xbb\xbf" + er7(segs).encode("utf-8"))
    assert msg.segment("PID").first(5).component(1) == "Ōtsuka"


def test_repeated_field_gives_each_repetition() -> None:
    segs = replace_segment(segments(), "PID", f"PID|1||{NHS}^^^NHS^NH~H123^^^RX1^MR||Example^Robin")
    pid = parse_message(er7(segs)).segment("PID")
    assert [(r.component(1), r.component(4), r.component(5)) for r in pid.get(3)] == [
        (NHS, "NHS", "NH"), ("H123", "RX1", "MR")]


def test_z_segment_is_kept_and_readable() -> None:
    msg = parse_message(er7([*segments(), "ZSP|1|walking^group&local"]))
    zsp = msg.segment("ZSP")
    assert zsp is not None
    assert zsp.first(2).component(2, 2) == "local"


def test_escape_sequences_are_decoded_in_values() -> None:
    segs = replace_segment(segments(), "NTE", "NTE|1||Pipe \\F\\ caret \\S\\ amp \\T\\ tilde \\R\\ slash \\E\\")
    note = parse_message(er7(segs)).segment("NTE").first(3).text()
    assert note == "Pipe | caret ^ amp & tilde ~ slash \\"


def test_unescape_formatting_and_hex() -> None:
    enc = Encoding()
    assert unescape("a\\.br\\b", enc) == "a\nb"
    assert unescape("\\H\\bold\\N\\", enc) == "bold"
    assert unescape("\\X4869\\", enc) == "Hi"
    assert unescape("C:\\path\\to", enc) == "C:\\path\\to"  # unknown sequences stay as written


def test_custom_delimiters_are_honoured() -> None:
    text = er7([s.replace("|", "#").replace("^", "!") for s in segments()])
    msg = parse_message(text)
    assert msg.encoding.field == "#"
    assert msg.segment("PID").first(3).component(4) == "NHS"


def test_version_2_3_message_parses() -> None:
    assert parse_message(ref_i12(version="2.3")).version == "2.3"


@pytest.mark.parametrize("raw", [b"MSH|garbage", b"\x00\x01\x02", b"", b"   "])
def test_garbage_is_rejected_ar(raw: bytes) -> None:
    assert rejection(raw).ack_code == "AR"


def test_message_not_starting_with_msh_is_rejected_ar() -> None:
    error = rejection(b"PID|1||x")
    assert (error.ack_code, error.segment, error.code) == ("AR", "MSH", "100")


def test_one_segment_message_is_rejected_ar() -> None:
    error = rejection(segments()[0] + "\r")
    assert (error.ack_code, error.code) == ("AR", "100")


@pytest.mark.parametrize(("msh9", "code"), [("ADT^A04^ADT_A04", "200"), ("REF^I15^REF_I12", "201"),
                                            ("ORU^R01", "200")])
def test_unsupported_message_type_is_rejected_ar(msh9: str, code: str) -> None:
    segs = segments()
    segs[0] = segs[0].replace("REF^I12^REF_I12", msh9)
    error = rejection(er7(segs))
    assert (error.ack_code, error.segment, error.field, error.code) == ("AR", "MSH", 9, code)


@pytest.mark.parametrize("version", ["2.2", "2.9", "3.0", ""])
def test_unsupported_version_is_rejected_ar(version: str) -> None:
    error = rejection(ref_i12(version=version))
    assert (error.ack_code, error.location, error.code) == ("AR", "MSH-12", "203")


def test_empty_control_id_is_rejected_ar() -> None:
    error = rejection(ref_i12(control_id=""))
    assert (error.ack_code, error.location, error.code) == ("AR", "MSH-10", "101")


@pytest.mark.parametrize("msh2", ["^~\\&&", "^~", "ab\\&", "^ \\&", "^~|&"])
def test_wrong_encoding_characters_are_rejected_ar(msh2: str) -> None:
    segs = segments()
    segs[0] = segs[0].replace("^~\\&", msh2, 1)
    error = rejection(er7(segs))
    assert (error.ack_code, error.location, error.code) == ("AR", "MSH-2", "102")


def test_unknown_segment_is_rejected_ar_naming_it() -> None:
    error = rejection(er7([*segments(), "ABC|1|2"]))
    assert (error.ack_code, error.segment) == ("AR", "ABC")


@pytest.mark.parametrize("bad", ["pid|1", "PID^1", "P|1", "NTE1|x"])
def test_malformed_segment_id_is_rejected_ar(bad: str) -> None:
    assert rejection(er7([*segments(), bad])).ack_code == "AR"


def test_second_msh_is_rejected_ar() -> None:
    error = rejection(er7(segments() + segments()))
    assert (error.ack_code, error.segment, error.sequence) == ("AR", "MSH", 2)


def test_control_characters_are_rejected_ar() -> None:
    segs = replace_segment(segments(), "NTE", "NTE|1||bad\x00byte")
    error = rejection(er7(segs))
    assert (error.ack_code, error.segment, error.code) == ("AR", "NTE", "102")


def test_sniff_header_reads_fields_of_an_unparseable_message() -> None:
    fields, encoding = sniff_header(b"\x0bMSH|^~\\&|APP|FAC|||2026||XYZ|CTRL9|P|9.9\rjunk")
    assert (fields[3], fields[4], fields[10], fields[12]) == ("APP", "FAC", "CTRL9", "9.9")
    assert encoding.component == "^"
    assert sniff_header(b"\x00\x01") == ({}, Encoding())
