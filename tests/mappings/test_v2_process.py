"""process_v2 end to end: public samples, the black-box message, and fuzzed input that must never raise."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle
from hl7apy.parser import parse_message as hl7apy_parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings.v2 import V2Outcome, ack_for, process_v2
from tests.fixtures.hl7v2.messages import HERE, NHS, SAMPLES, er7, ref_i12, segments

NOW = datetime(2026, 11, 20, 10, 31, 5, tzinfo=UTC)


def msa(ack: str) -> list[str]:
    """Returns MSA's fields after checking that hl7apy reads the whole ACK."""
    message = hl7apy_parse(ack, find_groups=False)
    assert [c.name for c in message.children][:2] == ["MSH", "MSA"]
    return next(s for s in ack.split("\r") if s.startswith("MSA|")).split("|")


def test_black_box_message_is_aa_with_a_valid_bundle() -> None:
    raw = ref_i12()
    outcome = process_v2(raw, now=NOW)
    assert (outcome.ack_code, outcome.rejection) == ("AA", None)
    assert (outcome.control_id, outcome.sender) == ("BARSV2A1", ("HOSPPAS", "RX1"))
    Bundle.model_validate(outcome.bundle)
    assert msa(ack_for(outcome, raw, now=NOW))[1:3] == ["AA", "BARSV2A1"]


def test_black_box_message_from_demo_sender_over_lf_is_aa() -> None:
    raw = er7(segments(control_id="BARSV2M1", app="DEMOSENDER", facility="DEMO"), "\n").encode()
    outcome = process_v2(raw, now=NOW)
    assert outcome.ack_code == "AA"
    assert outcome.sender == ("DEMOSENDER", "DEMO")


@pytest.mark.parametrize("sample", [p for p in SAMPLES if "REF-" in p.name], ids=lambda p: p.name)
def test_ref_samples_parse_and_are_ae_for_the_missing_nhs_number(sample: Path) -> None:
    raw = sample.read_bytes()
    outcome = process_v2(raw, now=NOW)
    assert outcome.parsed is not None
    assert (outcome.ack_code, outcome.rejection.segment, outcome.rejection.field) == ("AE", "PID", 3)
    assert outcome.bundle is None
    ack = ack_for(outcome, raw, now=NOW)
    assert msa(ack)[1:3] == ["AE", outcome.parsed.control_id]
    assert "ERR||PID^1^3|101^" in ack


@pytest.mark.parametrize("sample", [p for p in SAMPLES if "REF-" not in p.name], ids=lambda p: p.name)
def test_adt_and_oru_samples_are_ar_unsupported_message_type(sample: Path) -> None:
    raw = sample.read_bytes()
    outcome = process_v2(raw, now=NOW)
    assert (outcome.ack_code, outcome.rejection.code, outcome.parsed) == ("AR", "200", None)
    assert outcome.control_id  # best effort from the raw text
    ack = ack_for(outcome, raw, now=NOW)
    assert msa(ack)[1:3] == ["AR", outcome.control_id]


def test_i14_sample_with_an_nhs_number_is_an_aa_cancel() -> None:
    text = (HERE / "msft-fhirconverter_REF-I14-01.hl7").read_text()
    raw = text.replace("PATID1234^5^M11^ADT1^GOOD HEALTH HOSPITAL~", f"{NHS}^^^NHS^NH~", 1).encode()
    outcome = process_v2(raw, now=NOW)
    assert outcome.ack_code == "AA"
    request = next(e["resource"] for e in outcome.bundle["entry"]
                   if e["resource"]["resourceType"] == "ServiceRequest")
    assert request["status"] == "revoked"


@pytest.mark.parametrize("raw", [b"MSH|garbage", b"\x00\x01\x02", b"PID|1||x", b"",
                                 ref_i12().replace(b"RF1", b"ZZ9")])
def test_contract_junk_is_answered_not_raised(raw: bytes) -> None:
    outcome = process_v2(raw, now=NOW)
    assert outcome.ack_code in ("AE", "AR")
    assert msa(ack_for(outcome, raw, now=NOW))[1] == outcome.ack_code


def test_bad_nhs_number_is_ae_with_control_id() -> None:
    raw = ref_i12(nhs=NHS[:-1] + "9", control_id="BARSV2A2")
    outcome = process_v2(raw, now=NOW)
    assert (outcome.ack_code, outcome.rejection.location, outcome.control_id) == ("AE", "PID-3", "BARSV2A2")


def test_an_unexpected_mapping_error_becomes_ar_207(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> dict[str, object]:
        raise KeyError("bug")

    monkeypatch.setattr("mappings.v2.ref_to_bundle", broken)
    outcome = process_v2(ref_i12(), now=NOW)
    assert (outcome.ack_code, outcome.rejection.code, outcome.control_id) == ("AR", "207", "BARSV2A1")


# ---- fuzzing: whatever arrives, process_v2 answers and its ACK parses --------------------------------

VALID = ref_i12()


def corruptions() -> st.SearchStrategy[bytes]:
    byte = st.one_of(st.integers(0, 255), st.sampled_from(list(b"|^~\\&\r\n 0A")))
    flips = st.lists(st.tuples(st.integers(0, len(VALID) - 1), byte), min_size=1, max_size=12)
    flipped = flips.map(lambda changes: _apply(VALID, changes))
    truncated = st.integers(0, len(VALID)).map(lambda n: VALID[:n])
    deleted = st.sets(st.integers(0, 4), min_size=1).map(
        lambda gone: er7([s for i, s in enumerate(segments()) if i not in gone]).encode())
    inserted = st.tuples(st.integers(0, len(VALID)), st.sampled_from([b"|", b"^", b"~", b"\\", b"&", b"\r", b"\n",
                                                                       b"\\X0\\", b"\\F", b"MSH|"]))
    spliced = inserted.map(lambda t: VALID[: t[0]] + t[1] + VALID[t[0]:])
    return st.one_of(flipped, truncated, deleted, spliced, st.binary(max_size=600),
                     st.binary(max_size=300).map(lambda b: b"MSH|^~\\&|" + b))


def _apply(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for index, value in changes:
        out[index] = value
    return bytes(out)


def check_answer(raw: bytes, outcome: V2Outcome) -> None:
    assert outcome.ack_code in ("AA", "AE", "AR")
    assert (outcome.bundle is not None) == (outcome.ack_code == "AA")
    fields = msa(ack_for(outcome, raw, now=NOW))
    assert fields[1] == outcome.ack_code
    if outcome.bundle is not None:
        Bundle.model_validate(outcome.bundle)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=corruptions())
def test_corrupted_messages_never_raise_and_always_get_a_parseable_ack(raw: bytes) -> None:
    check_answer(raw, process_v2(raw, now=NOW))
