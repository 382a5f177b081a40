"""REF^I12/I13/I14 to the FHIR R4 message Bundle, validated with fhir.resources R4B."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from mappings.v2.parse import V2Rejection, parse_message
from mappings.v2.to_fhir import ref_to_bundle
from profiles.systems import NHS_NUMBER, ODS_CODE, SNOMED, SP_REFERRAL
from tests.fixtures.hl7v2.messages import HERE, NHS, OTHER_NHS, er7, ref_i12, replace_segment, segments

RECEIVED = datetime(2026, 11, 20, 10, 31, 5, tzinfo=UTC)
RF1 = ("RF1|A^Accepted^HL70283|R^Routine^HL70280|SP^Social prescribing^L||O^Outgoing^HL70284|BARSV2A1-R|"
       "20261120|||Loneliness and isolation")


def bundle_of(segs: list[str]) -> dict[str, Any]:
    bundle = ref_to_bundle(parse_message(er7(segs)), received_at=RECEIVED)
    Bundle.model_validate(bundle)  # every Bundle we produce must be valid R4 structure
    return bundle


def resource(bundle: dict[str, Any], resource_type: str, nth: int = 0) -> dict[str, Any]:
    found = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]
    return found[nth]


def rejected(segs: list[str]) -> V2Rejection:
    with pytest.raises(V2Rejection) as caught:
        ref_to_bundle(parse_message(er7(segs)), received_at=RECEIVED)
    return caught.value


def with_rf1(**changes: str) -> list[str]:
    fields = RF1.split("|")
    for number, value in changes.items():
        fields[int(number.lstrip("f"))] = value
    return replace_segment(segments(), "RF1", "|".join(fields))


def test_contract_message_maps_to_a_valid_message_bundle() -> None:
    bundle = bundle_of(segments())
    assert bundle["type"] == "message"
    assert bundle["timestamp"] == "2026-11-20T10:30:00+00:00"
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == [
        "MessageHeader", "ServiceRequest", "Patient", "Practitioner", "Organization"]
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in bundle["entry"])


def test_message_header_is_a_bars_new_referral_focused_on_the_request() -> None:
    bundle = bundle_of(segments())
    header = resource(bundle, "MessageHeader")
    assert header["eventCoding"] == {"system": "https://fhir.nhs.uk/CodeSystem/message-events-bars",
                                     "code": "servicerequest-request"}
    assert header["reason"]["coding"][0] == {"system": "https://fhir.nhs.uk/CodeSystem/message-reason-bars",
                                             "code": "new"}
    assert header["source"] == {"endpoint": f"{ODS_CODE}|RX1", "name": "HOSPPAS"}
    assert header["focus"] == [{"reference": bundle["entry"][1]["fullUrl"]}]
    sender = next(e for e in bundle["entry"] if e["fullUrl"] == header["sender"]["reference"])
    assert sender["resource"]["identifier"] == [{"system": ODS_CODE, "value": "RX1"}]


def test_service_request_carries_referral_id_priority_code_and_reason() -> None:
    bundle = bundle_of(segments())
    request = resource(bundle, "ServiceRequest")
    assert request["identifier"] == [{"system": "https://sp-gateway.dev/fhir/Id/v2-referral/RX1",
                                      "value": "BARSV2A1-R"}]
    assert (request["status"], request["intent"], request["priority"]) == ("active", "order", "routine")
    assert request["code"]["coding"][0] == {"system": SNOMED, "code": SP_REFERRAL,
                                            "display": "Referral to social prescribing service"}
    assert request["code"]["coding"][1]["code"] == "SP"
    assert request["code"]["text"] == "Social prescribing"
    assert request["reasonCode"] == [{"text": "Loneliness and isolation"}]
    assert request["note"] == [{"text": "Recently bereaved, would like a walking group"}]
    # RF1-7 is a date; MSH-7 is the same day with a time, so it gives the instant (no zone: UTC).
    assert request["authoredOn"] == "2026-11-20T10:30:00+00:00"


def test_patient_and_subject_carry_the_nhs_number() -> None:
    bundle = bundle_of(segments())
    patient = resource(bundle, "Patient")
    request = resource(bundle, "ServiceRequest")
    assert patient["identifier"] == [{"system": NHS_NUMBER, "value": NHS}]
    assert request["subject"]["identifier"] == {"system": NHS_NUMBER, "value": NHS}
    assert request["subject"]["reference"] == bundle["entry"][2]["fullUrl"]
    assert patient["name"] == [{"use": "official", "family": "Example", "given": ["Robin"]}]
    assert (patient["birthDate"], patient["gender"]) == ("1948-03-11", "female")
    assert patient["address"] == [{"line": ["2 Mill Lane"], "city": "Lincoln", "postalCode": "LN1 2AB"}]
    assert patient["telecom"] == [{"system": "phone", "value": "07700900321", "use": "home"}]


def requester_of(bundle: dict[str, Any]) -> dict[str, Any]:
    reference = resource(bundle, "ServiceRequest")["requester"]["reference"]
    return next(e["resource"] for e in bundle["entry"] if e["fullUrl"] == reference)


def test_requester_is_the_rp_practitioner() -> None:
    practitioner = requester_of(bundle_of(segments()))
    assert practitioner["name"] == [{"family": "Patel", "given": ["Nina"], "prefix": ["Dr"]}]
    assert practitioner["address"] == [{"line": ["Ward 7"], "city": "Lincoln", "postalCode": "LN2 5QY"}]
    # The black-box message puts its GMC code in PRD-6 (preferred method of contact), not PRD-7.
    assert "identifier" not in practitioner


@pytest.mark.parametrize(("pln", "system"), [
    ("C1234567^GMC", "https://fhir.hl7.org.uk/Id/gmc-number"),
    ("G1234567^^^GMP", "https://fhir.hl7.org.uk/Id/gmp-number"),
    ("X99^SL^^20240112", "https://sp-gateway.dev/fhir/Id/v2-provider/SL"),
    ("X99", "https://sp-gateway.dev/fhir/Id/v2-provider/RX1"),
])
def test_prd_7_identifier_gets_a_uk_core_or_local_system(pln: str, system: str) -> None:
    segs = replace_segment(segments(), "PRD", f"PRD|RP^Referring provider^HL70286|Patel^Nina|||||{pln}")
    assert requester_of(bundle_of(segs))["identifier"][0] == {"system": system, "value": pln.split("^")[0]}


def test_rt_provider_becomes_the_performer() -> None:
    segs = [*segments()[:3], "PRD|RT^Referred to provider^HL70286|Link^Worker|||||LW001^GMP", *segments()[3:]]
    bundle = bundle_of(segs)
    request = resource(bundle, "ServiceRequest")
    performer = resource(bundle, "Practitioner", 1)
    assert request["performer"][0]["identifier"] == {"system": "https://fhir.hl7.org.uk/Id/gmp-number",
                                                     "value": "LW001"}
    assert request["performer"][0]["reference"] == bundle["entry"][4]["fullUrl"]
    assert performer["name"][0]["family"] == "Link"


def test_resend_maps_to_the_same_bundle_and_a_new_control_id_does_not() -> None:
    first = ref_to_bundle(parse_message(ref_i12()), received_at=RECEIVED)
    again = ref_to_bundle(parse_message(ref_i12()), received_at=datetime(2027, 1, 1, tzinfo=UTC))
    other = ref_to_bundle(parse_message(ref_i12(control_id="BARSV2A9")), received_at=RECEIVED)
    assert first == again
    assert not {e["fullUrl"] for e in first["entry"]} & {e["fullUrl"] for e in other["entry"]}


def test_same_control_id_from_another_sender_gets_other_full_urls() -> None:
    one = ref_to_bundle(parse_message(ref_i12()), received_at=RECEIVED)
    two = ref_to_bundle(parse_message(ref_i12(app="DEMOSENDER", facility="DEMO")), received_at=RECEIVED)
    assert not {e["fullUrl"] for e in one["entry"]} & {e["fullUrl"] for e in two["entry"]}
    assert resource(two, "MessageHeader")["source"]["endpoint"] == "https://sp-gateway.dev/fhir/Id/v2-facility|DEMO"


@pytest.mark.parametrize(("trigger", "reason", "status"), [("I12", "new", "active"), ("I13", "update", "active"),
                                                           ("I14", "update", "revoked")])
def test_trigger_event_sets_reason_and_status(trigger: str, reason: str, status: str) -> None:
    bundle = bundle_of(segments(trigger=trigger))
    assert resource(bundle, "MessageHeader")["reason"]["coding"][0]["code"] == reason
    assert resource(bundle, "ServiceRequest")["status"] == status


def test_i14_sample_with_an_nhs_number_maps_to_a_cancel() -> None:
    text = (HERE / "msft-fhirconverter_REF-I14-01.hl7").read_text()
    text = text.replace("PID|1||PATID1234^5^M11^ADT1^GOOD HEALTH HOSPITAL~", f"PID|1||{OTHER_NHS}^^^NHS^NH~", 1)
    bundle = ref_to_bundle(parse_message(text), received_at=RECEIVED)
    Bundle.model_validate(bundle)
    request = resource(bundle, "ServiceRequest")
    assert request["status"] == "revoked"
    assert request["identifier"][0]["value"] == "226839"  # RF1-6, the referral being cancelled
    assert resource(bundle, "MessageHeader")["reason"]["coding"][0]["code"] == "update"
    assert request["priority"] == "routine"
    assert request["authoredOn"] == "2022-01-25T16:20:00+00:00"


@pytest.mark.parametrize(("code", "priority"), [("R", "routine"), ("S", "stat"), ("A", "asap"), ("U", "urgent")])
def test_rf1_2_priority_maps_to_fhir_priority(code: str, priority: str) -> None:
    assert resource(bundle_of(with_rf1(f2=f"{code}^x^HL70280")), "ServiceRequest")["priority"] == priority


def test_empty_priority_is_left_out_and_unknown_priority_is_ae() -> None:
    assert "priority" not in resource(bundle_of(with_rf1(f2="")), "ServiceRequest")
    error = rejected(with_rf1(f2="Z"))
    assert (error.ack_code, error.location, error.code) == ("AE", "RF1-2", "103")


def test_rejected_status_cannot_open_a_referral_but_cancels_an_update() -> None:
    error = rejected(with_rf1(f1="R^Rejected^HL70283"))
    assert (error.ack_code, error.location) == ("AE", "RF1-1")
    segs = with_rf1(f1="E^Expired^HL70283")
    segs[0] = segs[0].replace("REF^I12", "REF^I13")
    assert resource(bundle_of(segs), "ServiceRequest")["status"] == "revoked"
    assert rejected(with_rf1(f1="Q")).code == "103"


def test_missing_rf1_6_falls_back_to_msh_10() -> None:
    request = resource(bundle_of(with_rf1(f6="")), "ServiceRequest")
    assert request["identifier"][0]["value"] == "BARSV2A1"


def test_authored_on_prefers_a_precise_rf1_7_with_its_offset() -> None:
    request = resource(bundle_of(with_rf1(f7="202611190915+0100")), "ServiceRequest")
    assert request["authoredOn"] == "2026-11-19T09:15:00+01:00"


def test_date_only_rf1_7_of_another_day_stays_a_date() -> None:
    assert resource(bundle_of(with_rf1(f7="20261118")), "ServiceRequest")["authoredOn"] == "2026-11-18"


def test_authored_on_falls_back_to_receipt_time_without_rf1_7_and_msh_7() -> None:
    segs = with_rf1(f7="")
    segs[0] = segs[0].replace("|20261120103000|", "||")
    bundle = bundle_of(segs)
    assert resource(bundle, "ServiceRequest")["authoredOn"] == "2026-11-20T10:31:05+00:00"
    assert bundle["timestamp"] == "2026-11-20T10:31:05+00:00"


@pytest.mark.parametrize("value", ["2026-11-20", "20261340", "2026112025", "yesterday"])
def test_bad_rf1_7_is_ae_data_type_error(value: str) -> None:
    error = rejected(with_rf1(f7=value))
    assert (error.ack_code, error.location, error.code) == ("AE", "RF1-7", "102")


def test_missing_nhs_number_is_ae_naming_pid_3() -> None:
    segs = replace_segment(segments(), "PID", "PID|1||H123^^^RX1^MR||Example^Robin")
    error = rejected(segs)
    assert (error.ack_code, error.segment, error.field, error.code) == ("AE", "PID", 3, "101")
    assert NHS not in error.text


def test_invalid_nhs_number_is_ae_naming_pid_3() -> None:
    bad = NHS[:-1] + str((int(NHS[-1]) + 1) % 10)
    error = rejected(segments(nhs=bad))
    assert (error.ack_code, error.location, error.code) == ("AE", "PID-3", "102")
    assert bad not in error.text


@pytest.mark.parametrize("cx", [f"{NHS}^^^&2.16.840.1.113883.2.1.4.1&ISO", f"{NHS}^^^^NH", f"{NHS}^^^nhs"])
def test_nhs_number_is_recognised_by_authority_oid_or_type(cx: str) -> None:
    segs = replace_segment(segments(), "PID", f"PID|1||{cx}||Example^Robin")
    assert resource(bundle_of(segs), "Patient")["identifier"][0] == {"system": NHS_NUMBER, "value": NHS}


def test_other_pid_3_identifiers_are_kept_with_a_local_system() -> None:
    segs = replace_segment(segments(), "PID", f"PID|1||H123^^^RX1^MR~{NHS}^^^NHS^NH||Example^Robin")
    identifiers = resource(bundle_of(segs), "Patient")["identifier"]
    assert identifiers[0] == {"system": NHS_NUMBER, "value": NHS}
    assert identifiers[1] == {"system": "https://sp-gateway.dev/fhir/Id/v2-patient/RX1", "value": "H123",
                              "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                   "code": "MR"}]}}


@pytest.mark.parametrize("name", ["RF1", "PID"])
def test_missing_required_segment_is_ae_naming_it(name: str) -> None:
    error = rejected(replace_segment(segments(), name, None))
    assert (error.ack_code, error.segment, error.field, error.code) == ("AE", name, None, "100")


def test_missing_referring_provider_is_ae() -> None:
    segs = replace_segment(segments(), "PRD", "PRD|RT^Referred to provider^HL70286|Link^Worker")
    error = rejected(segs)
    assert (error.ack_code, error.location) == ("AE", "PRD-1")


@pytest.mark.parametrize(("code", "gender"), [("M", "male"), ("F", "female"), ("U", "unknown"), ("O", "other"),
                                              ("A", "other"), ("N", "other")])
def test_pid_8_maps_to_administrative_gender(code: str, gender: str) -> None:
    segs = replace_segment(segments(), "PID", f"PID|1||{NHS}^^^NHS^NH||Example^Robin||19480311|{code}")
    assert resource(bundle_of(segs), "Patient")["gender"] == gender


def test_pid_13_mobile_and_email_become_telecom() -> None:
    segs = replace_segment(segments(), "PID", f"PID|1||{NHS}^^^NHS^NH||Example^Robin||||||||"
                           "07700900321^PRN^CP~^NET^Internet^robin@example.org")
    assert resource(bundle_of(segs), "Patient")["telecom"] == [
        {"system": "phone", "value": "07700900321", "use": "mobile"},
        {"system": "email", "value": "robin@example.org"}]


def test_repeated_ntes_become_several_notes_with_escapes_decoded() -> None:
    segs = [*segments(), "NTE|2||Likes \\T\\ needs: walking\\R\\gardening", "NTE|3||Line one~Line two"]
    notes = resource(bundle_of(segs), "ServiceRequest")["note"]
    assert [n["text"] for n in notes] == ["Recently bereaved, would like a walking group",
                                          "Likes & needs: walking~gardening", "Line one\nLine two"]


def test_dg1_and_readable_obx_become_notes_and_binary_obx_does_not() -> None:
    segs = [*segments(), "DG1|1||F32.9^Depressive episode^I10", "OBX|1|NM|SWEMWBS^Wellbeing score^L||21|score",
            "OBX|2|ED|IMG^Image^L||^IM^JPEG^Base64^AAAA"]
    notes = [n["text"] for n in resource(bundle_of(segs), "ServiceRequest")["note"]]
    assert notes[1:] == ["Diagnosis: Depressive episode", "Wellbeing score: 21 score"]


def test_no_nte_and_no_pv1_give_a_bundle_without_notes() -> None:
    segs = replace_segment(segments(), "NTE", None)
    assert "note" not in resource(bundle_of(segs), "ServiceRequest")


def test_z_segments_do_not_disturb_the_mapping() -> None:
    bundle = bundle_of([*segments(), "ZSP|1|local^thing"])
    assert resource(bundle, "Patient")["identifier"][0]["value"] == NHS


def test_missing_sender_is_ae_naming_msh_4() -> None:
    segs = segments(app="", facility="")
    error = rejected(segs)
    assert (error.ack_code, error.location) == ("AE", "MSH-4")


def test_bad_birth_date_is_ae_naming_pid_7() -> None:
    segs = replace_segment(segments(), "PID", f"PID|1||{NHS}^^^NHS^NH||Example^Robin||19481311")
    assert rejected(segs).location == "PID-7"
