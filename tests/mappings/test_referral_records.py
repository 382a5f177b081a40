"""Shaping a received referral into the records the gateway stores (pure; no database)."""

from __future__ import annotations

from datetime import UTC, datetime

from mappings.referral_records import (
    consent_record,
    local_reference,
    message_index,
    parse_instant,
    patient_nhs_of,
    patient_record,
    performer_org,
    referenced_record,
    referenced_resources,
    relink,
    service_request_record,
    task_record,
)
from profiles.systems import NHS_NUMBER, ODS_CODE
from tests.profiles.gp_message import referral_bundle

NHS = "9990001006"
PATIENT_REF = {"reference": "Patient/p1", "identifier": {"system": NHS_NUMBER, "value": NHS}}


def _message() -> tuple[dict, dict]:
    bundle = referral_bundle(NHS, "A81001", "8VC01", "REC-1", ["8VC01"])
    return bundle, {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}


def test_references_into_the_message_become_logical_references() -> None:
    bundle, by_type = _message()
    index = message_index(bundle)
    record = service_request_record(by_type["ServiceRequest"], PATIENT_REF, index)
    assert record["subject"] == PATIENT_REF
    assert record["requester"] == {"type": "Practitioner", "display": "Sam Jones"}
    assert not any(str(v).startswith("urn:uuid:") for v in (record["requester"], record["performer"]))
    assert performer_org(record) == "8VC01"
    assert "https://fhir.hl7.org.uk/StructureDefinition/UKCore-ServiceRequest" in record["meta"]["profile"]


def test_a_reference_outside_the_message_is_left_as_it_is() -> None:
    ref = {"reference": "Organization/elsewhere"}
    assert local_reference(ref, {}) is ref
    assert local_reference("not a reference", {}) == "not a reference"


def test_the_stored_patient_keeps_no_links_into_the_message_and_leads_with_the_nhs_number() -> None:
    _, by_type = _message()
    source = {**by_type["Patient"], "generalPractitioner": [{"reference": "urn:uuid:x"}], "id": "tmp"}
    patient = patient_record(source, NHS)
    assert "generalPractitioner" not in patient and "id" not in patient
    assert patient["identifier"][0] == {"system": NHS_NUMBER, "value": NHS}
    assert patient_record(None, NHS)["identifier"] == [{"system": NHS_NUMBER, "value": NHS}]
    assert patient_nhs_of({**patient, "resourceType": "Patient"}) == NHS


def test_a_consent_names_the_stored_patient_and_its_actors_by_identifier() -> None:
    bundle, by_type = _message()
    consent = by_type["Consent"]
    consent["provision"]["actor"][0]["reference"] = {
        "reference": next(
            e["fullUrl"] for e in bundle["entry"] if e["resource"].get("name") == "Social prescribing service"
        )
    }
    record = consent_record(consent, PATIENT_REF, message_index(bundle))
    assert record["patient"] == PATIENT_REF
    assert record["provision"]["actor"][0]["reference"]["identifier"] == {"system": ODS_CODE, "value": "8VC01"}


def test_the_task_carries_its_state_and_addresses_the_host() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    task = task_record(
        service_request={"id": "sr1", "authoredOn": "2026-11-20T10:00:00+00:00"},
        patient_ref=PATIENT_REF,
        requester="A81001",
        recipient="8VC01",
        referral_id="SPR-1",
        status="on-hold",
        reason="awaiting consent",
        business_status=None,
        now=now,
    )
    assert task["focus"] == {"reference": "ServiceRequest/sr1"} and task["status"] == "on-hold"
    assert task["statusReason"] == {"text": "awaiting consent"} and "businessStatus" not in task
    assert task["owner"]["identifier"]["value"] == "8VC01"
    assert patient_nhs_of(task) == NHS


def test_instants_become_utc_and_bad_ones_none() -> None:
    assert parse_instant("2026-11-20T10:00:00+01:00") == datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert parse_instant("2026-11-20T10:00:00") == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert parse_instant("yesterday") is None and parse_instant(None) is None


def test_the_resources_a_referral_reaches_get_ids_and_every_reference_to_them_is_relinked() -> None:
    bundle, by_type = _message()
    index = message_index(bundle)
    ids = iter(["r1", "r2", "r3"])
    reached, links = referenced_resources([by_type["ServiceRequest"]], index, lambda: next(ids))
    # the requester Practitioner only: the sender Organization and the Consent are not reached
    assert [(rid, r["resourceType"]) for rid, r in reached] == [("r1", "Practitioner")]
    record = service_request_record(by_type["ServiceRequest"], PATIENT_REF, index, links)
    assert record["requester"] == {"reference": "Practitioner/r1"}
    stored = referenced_record(reached[0][1], index, links, PATIENT_REF)
    assert "id" not in stored and stored["name"] == [{"family": "Jones", "given": ["Sam"]}]


def test_relink_points_at_the_stored_patient_and_drops_dangling_message_references() -> None:
    bundle, _ = _message()
    index = message_index(bundle)
    patient_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    node = {"subject": {"reference": patient_url}, "basedOn": [{"reference": "urn:uuid:gone"}], "x": 1}
    assert relink(node, index, {}, PATIENT_REF) == {"subject": PATIENT_REF, "x": 1}


def test_a_relinked_reference_keeps_the_targets_identifier_so_the_addressee_is_still_known() -> None:
    bundle, by_type = _message()
    host_url = "urn:uuid:host"
    bundle["entry"].append(
        {
            "fullUrl": host_url,
            "resource": {"resourceType": "Organization", "identifier": [{"system": ODS_CODE, "value": "8VC02"}]},
        }
    )
    sr = {**by_type["ServiceRequest"], "performer": [{"reference": host_url}]}
    index = message_index(bundle)
    _, links = referenced_resources([sr], index, lambda: "org1")

    record = service_request_record(sr, PATIENT_REF, index, links)

    assert record["performer"] == [
        {"reference": "Organization/org1", "identifier": {"system": ODS_CODE, "value": "8VC02"}}
    ]
    assert performer_org(record) == "8VC02"
