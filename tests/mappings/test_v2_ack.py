"""ACK construction: swapped header, MSA, ERR per version, and hl7apy can read every ACK we build."""

from __future__ import annotations

from datetime import UTC, datetime

from hl7apy.core import Message
from hl7apy.parser import parse_message as hl7apy_parse

from mappings.v2.ack import build_ack
from mappings.v2.parse import V2Rejection, parse_message
from tests.fixtures.hl7v2.messages import er7, ref_i12, segments

NOW = datetime(2026, 11, 20, 10, 31, 5, tzinfo=UTC)


def read(ack: str) -> Message:
    message = hl7apy_parse(ack, find_groups=False)
    assert [c.name for c in message.children][:2] == ["MSH", "MSA"]
    return message


def fields(ack: str, segment: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith(segment + "|")).split("|")


def test_aa_swaps_sender_and_receiver_and_echoes_control_id() -> None:
    ack = build_ack(parse_message(ref_i12()), "AA", now=NOW)
    read(ack)
    msh = fields(ack, "MSH")
    assert msh[2:6] == ["SPGW", "SPGW", "HOSPPAS", "RX1"]
    assert msh[6] == "20261120103105+0000"
    assert (msh[8], msh[10], msh[11]) == ("ACK^I12^ACK", "P", "2.5")
    assert msh[9].startswith("ACK") and len(msh[9]) == 20
    assert fields(ack, "MSA") == ["MSA", "AA", "BARSV2A1"]
    assert "ERR|" not in ack
    assert ack.endswith("\r") and "\n" not in ack


def test_ae_carries_err_location_code_severity_and_message() -> None:
    error = V2Rejection("AE", "PID", 3, "PID-3 has no NHS number.")
    ack = build_ack(parse_message(ref_i12()), "AE", error=error, now=NOW)
    read(ack)
    assert fields(ack, "MSA") == ["MSA", "AE", "BARSV2A1", "PID-3 has no NHS number."]
    assert fields(ack, "ERR") == ["ERR", "", "PID^1^3", "101^Required field missing^HL70357", "E", "", "", "",
                                  "PID-3 has no NHS number."]


def test_err_location_with_component_and_segment_only() -> None:
    event = build_ack(None, "AR", error=V2Rejection("AR", "MSH", 9, "x", code="201", component=2), now=NOW)
    assert fields(event, "ERR")[2] == "MSH^1^9^1^2"
    missing = build_ack(None, "AE", error=V2Rejection("AE", "RF1", None, "x", code="100"), now=NOW)
    assert fields(missing, "ERR")[2:4] == ["RF1^1", "100^Segment sequence error^HL70357"]


def test_ae_without_a_rejection_reports_internal_error_207() -> None:
    ack = build_ack(parse_message(ref_i12()), "AE", "Refused by the referral profile.", now=NOW)
    read(ack)
    assert fields(ack, "ERR")[3] == "207^Application internal error^HL70357"
    assert fields(ack, "ERR")[8] == "Refused by the referral profile."


def test_ar_after_a_failed_parse_echoes_control_id_from_raw_text() -> None:
    raw = b"\x0bMSH|^~\\&|APP|FAC|RCV|RFAC|2026||ADT^A01^ADT_A01|CTRL-77|T|2.4\rbroken"
    ack = build_ack(None, "AR", error=V2Rejection("AR", "MSH", 9, "No.", code="200"), raw=raw, now=NOW)
    read(ack)
    msh = fields(ack, "MSH")
    assert msh[2:6] == ["RCV", "RFAC", "APP", "FAC"]
    assert (msh[8], msh[10], msh[11]) == ("ACK^A01^ACK", "T", "2.4")
    assert fields(ack, "MSA")[:3] == ["MSA", "AR", "CTRL-77"]
    # Before v2.5, ERR-1 (ELD) carries location and code.
    assert fields(ack, "ERR") == ["ERR", "MSH^1^9^200&Unsupported message type&HL70357"]


def test_garbage_gets_an_ack_with_our_names_and_version_2_5() -> None:
    ack = build_ack(None, "AR", error=V2Rejection("AR", None, None, "Unreadable."), raw=b"\x00\x01\x02", now=NOW)
    read(ack)
    msh = fields(ack, "MSH")
    assert (msh[2], msh[3], msh[11]) == ("SPGW", "SPGW", "2.5")
    assert fields(ack, "MSA")[:3] == ["MSA", "AR", ""]
    assert fields(ack, "ERR")[2] == ""


def test_unsupported_version_is_answered_in_2_5() -> None:
    raw = ref_i12(version="2.9")
    ack = build_ack(None, "AR", error=V2Rejection("AR", "MSH", 12, "No.", code="203"), raw=raw, now=NOW)
    read(ack)
    assert fields(ack, "MSH")[11] == "2.5"
    assert fields(ack, "MSA")[2] == "BARSV2A1"


def test_version_2_3_ack_has_two_component_type_and_eld_err() -> None:
    ack = build_ack(parse_message(ref_i12(version="2.3")), "AE", error=V2Rejection("AE", "PID", 3, "No."),
                    now=NOW)
    read(ack)
    assert fields(ack, "MSH")[8] == "ACK^I12"
    assert fields(ack, "ERR") == ["ERR", "PID^1^3^101&Required field missing&HL70357"]


def test_version_2_8_ack_has_no_msa_3() -> None:
    ack = build_ack(parse_message(ref_i12(version="2.8")), "AE", error=V2Rejection("AE", "PID", 3, "No."),
                    now=NOW)
    read(ack)
    assert fields(ack, "MSA") == ["MSA", "AE", "BARSV2A1"]
    assert fields(ack, "ERR")[8] == "No."


def test_echoed_values_are_re_escaped_for_our_delimiters() -> None:
    # '#' and '!' are this message's delimiters, so '^' and '|' are plain text in it.
    segs = [s.replace("|", "#").replace("^", "!") for s in segments(app="APPX", control_id="CTRLX")]
    segs[0] = segs[0].replace("APPX", "A^B|C").replace("CTRLX", "X^1")
    text = er7(segs)
    ack = build_ack(parse_message(text), "AA", now=NOW)
    read(ack)
    msh = fields(ack, "MSH")
    assert msh[4] == "A\\S\\B\\F\\C"
    assert fields(ack, "MSA")[2] == "X\\S\\1"


def test_control_id_is_new_per_message_and_stable_per_input() -> None:
    one = fields(build_ack(parse_message(ref_i12()), "AA", now=NOW), "MSH")[9]
    again = fields(build_ack(parse_message(ref_i12()), "AA", now=NOW), "MSH")[9]
    other = fields(build_ack(parse_message(ref_i12(control_id="B2")), "AA", now=NOW), "MSH")[9]
    later = fields(build_ack(parse_message(ref_i12()), "AA", now=datetime(2027, 1, 1, tzinfo=UTC)), "MSH")[9]
    assert one == again
    assert len({one, other, later}) == 3


def test_naive_now_is_taken_as_utc() -> None:
    ack = build_ack(parse_message(ref_i12()), "AA", now=datetime(2026, 11, 20, 10, 31, 5))
    assert fields(ack, "MSH")[6] == "20261120103105+0000"
