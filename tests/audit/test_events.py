"""audit/events.py: every builder yields a valid R4 AuditEvent in its BALP shape, and its index."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from audit.canonical import canonical_json
from audit.events import (
    BALP_ENTITY_TYPE,
    DCM,
    LOCAL_ENTITY_TYPE,
    AuditContext,
    auth_event,
    consent_decision_event,
    disclosure_event,
    index_fields,
    rest_event,
    system_event,
)
from profiles.systems import NHS_NUMBER, ODS_CODE, VCSE_ORG_ID

NHS = "9434765919"
RECORDED = datetime(2024, 5, 1, 10, 30, 15, 123456, tzinfo=timezone(timedelta(hours=1)))
RECORDED_TEXT = "2024-05-01T09:30:15.123456Z"
VCSE = f"{VCSE_ORG_ID}|befriend-42"
CTX = AuditContext(
    client_id="gp-emis-a81001",
    organisation="A81001",
    role="referrer",
    user="G1234567",
    request_id="60c2a4c6-1b2e-4b7e-9d8b-0f9a8e1b2c3d",
    correlation_id="11c2a4c6-1b2e-4b7e-9d8b-0f9a8e1b2c3d",
    source_ip="192.0.2.10",
    routing_headers={
        "nhsd-end-user-organisation": '{"identifier":{"value":"A81001"}}',
        "nhsd-target-identifier": "X26",
    },
)
WORKER = AuditContext()


def validated(event: dict[str, Any]) -> dict[str, Any]:
    """The event passes R4B AuditEvent validation and canonical JSON; returns it for further checks."""
    AuditEvent.model_validate(event)
    canonical_json(event)
    return event


def codes(concept: dict[str, Any]) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in concept["coding"]}


def agent_with(event: dict[str, Any], system: str, code: str) -> dict[str, Any]:
    matches = [a for a in event["agent"] if (system, code) in codes(a["type"])]
    assert len(matches) == 1, (system, code)
    return matches[0]


def entity_typed(event: dict[str, Any], system: str, code: str) -> dict[str, Any]:
    matches = [e for e in event["entity"] if (e["type"]["system"], e["type"]["code"]) == (system, code)]
    assert len(matches) == 1, (system, code)
    return matches[0]


def create_event(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "interaction": "create",
        "resource_type": "ServiceRequest",
        "resource_id": "sr-1",
        "outcome": 0,
        "patient_nhs": NHS,
        "description": None,
        "recorded": RECORDED,
    }
    args.update(overrides)
    return rest_event(CTX, **args)


def disclosure(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "recipient_org": VCSE,
        "patient_nhs": NHS,
        "referral_ref": "ServiceRequest/sr-1",
        "packet_id": "pkt-7",
        "fields": ["referralId", "name.given", "contact.route", "needs"],
        "consent_ref": "Consent/c-9",
        "outcome": 0,
        "recorded": RECORDED,
    }
    args.update(overrides)
    return disclosure_event(CTX, **args)


# --- REST (BALP Create / Read / Query) ----------------------------------------------------------


def test_referral_create_follows_balp_patient_create() -> None:
    event = validated(create_event())
    assert event["type"] == {
        "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
        "code": "rest",
        "display": "Restful Operation",
    }
    assert event["subtype"][0]["system"] == "http://hl7.org/fhir/restful-interaction"
    assert event["subtype"][0]["code"] == "create"
    assert event["action"] == "C"
    assert event["outcome"] == "0"
    assert event["recorded"] == RECORDED_TEXT
    client = agent_with(event, DCM, "110153")  # the client sends the data: Source
    assert client["who"]["identifier"]["value"] == CTX.client_id
    assert client["requestor"] is True
    assert client["network"] == {"address": "192.0.2.10", "type": "2"}
    assert client["role"][0]["coding"][0]["code"] == "referrer"
    server = agent_with(event, DCM, "110152")
    assert server["who"]["display"] == "sp-gateway"
    assert server["requestor"] is False
    assert event["source"]["observer"]["display"] == "sp-gateway"
    assert event["source"]["type"][0]["code"] == "4"


def test_read_and_search_make_the_client_the_destination() -> None:
    read = validated(create_event(interaction="read"))
    assert read["action"] == "R"
    assert agent_with(read, DCM, "110152")["who"]["identifier"]["value"] == CTX.client_id
    search = validated(create_event(interaction="search-type", resource_id=None, patient_nhs=None))
    assert search["action"] == "E"
    assert agent_with(search, DCM, "110153")["who"]["display"] == "sp-gateway"
    query = [e for e in search["entity"] if e.get("role", {}).get("code") == "24"]
    assert query[0]["what"] == {"type": "ServiceRequest"}


@pytest.mark.parametrize(
    ("interaction", "action"),
    [("update", "U"), ("patch", "U"), ("delete", "D"), ("vread", "R"), ("history-instance", "R"), ("operation", "E")],
)
def test_every_restful_interaction_gets_its_action(interaction: str, action: str) -> None:
    assert validated(create_event(interaction=interaction))["action"] == action


def test_patient_resource_and_trace_ids_are_entities() -> None:
    event = validated(create_event())
    patient = next(e for e in event["entity"] if e.get("role", {}).get("code") == "1")
    assert patient["type"]["code"] == "1"
    assert patient["what"]["identifier"] == {"system": NHS_NUMBER, "value": NHS}
    assert any(e["what"].get("reference") == "ServiceRequest/sr-1" for e in event["entity"] if "what" in e)
    request = entity_typed(event, BALP_ENTITY_TYPE, "XrequestId")
    assert request["what"]["identifier"]["value"] == CTX.request_id
    correlation = entity_typed(event, LOCAL_ENTITY_TYPE, "XcorrelationId")
    assert correlation["what"]["identifier"]["value"] == CTX.correlation_id


def test_routing_headers_are_recorded_as_entity_details() -> None:
    event = validated(create_event())
    routing = entity_typed(event, LOCAL_ENTITY_TYPE, "nhsd-routing")
    assert routing["detail"] == [
        {"type": "nhsd-end-user-organisation", "valueString": '{"identifier":{"value":"A81001"}}'},
        {"type": "nhsd-target-identifier", "valueString": "X26"},
    ]


def test_organisation_and_user_are_agents() -> None:
    event = validated(create_event())
    org = agent_with(event, "http://terminology.hl7.org/CodeSystem/v3-RoleClass", "PROV")
    assert org["who"] == {"type": "Organization", "identifier": {"system": ODS_CODE, "value": "A81001"}}
    user = agent_with(event, "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "AUT")
    assert user["who"]["identifier"]["value"] == "G1234567"
    assert user["requestor"] is True


def test_failure_records_outcome_and_description() -> None:
    event = validated(create_event(outcome=4, resource_id=None, description="profile check failed"))
    assert event["outcome"] == "4"
    assert event["outcomeDesc"] == "profile check failed"


def test_an_empty_context_builds_an_event_with_only_the_gateway() -> None:
    event = validated(
        rest_event(
            WORKER,
            interaction="read",
            resource_type="Task",
            resource_id="t1",
            outcome=0,
            patient_nhs=None,
            description=None,
            recorded=RECORDED,
        )
    )
    assert [a["who"] for a in event["agent"]] == [{"type": "Device", "display": "sp-gateway"}]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"interaction": "unknown"}, "restful-interaction"),
        ({"resource_type": "unknown"}, "resource type"),
        ({"resource_id": "has space"}, "FHIR id"),
        ({"outcome": 1}, "outcome"),
        ({"outcome": True}, "outcome"),
        ({"recorded": datetime(2024, 5, 1, 10, 30)}, "timezone"),
        ({"patient_nhs": "943 476 5919"}, "10 digits"),
    ],
)
def test_rest_event_refuses_bad_input(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_event(**overrides)


# --- disclosure (BALP PrivacyDisclosure, source side) -------------------------------------------


def test_disclosure_follows_balp_privacy_disclosure_source() -> None:
    event = validated(disclosure())
    assert (event["type"]["system"], event["type"]["code"]) == (DCM, "110106")
    assert event["subtype"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle",
        "code": "disclose",
        "display": "Disclose Record Lifecycle Event",
    }
    assert event["action"] == "R"
    assert codes(event["purposeOfEvent"][0]) == {("http://terminology.hl7.org/CodeSystem/v3-ActReason", "TREAT")}
    source = agent_with(event, DCM, "110153")
    assert source["who"] == event["source"]["observer"]
    recipient = agent_with(event, DCM, "110152")
    assert recipient["who"] == {"type": "Organization", "identifier": {"system": VCSE_ORG_ID, "value": "befriend-42"}}
    assert recipient["requestor"] is False
    assert agent_with(event, DCM, "110150")["who"]["identifier"]["value"] == CTX.client_id


def test_disclosure_lists_exactly_the_fields_sent() -> None:
    fields = ["referralId", "name.given", "contact.route", "needs"]
    event = validated(disclosure(fields=fields))
    packet = entity_typed(event, LOCAL_ENTITY_TYPE, "referral-packet")
    assert packet["what"]["identifier"]["value"] == "pkt-7"
    assert packet["detail"] == [{"type": "disclosed-field", "valueString": f} for f in fields]
    consent = entity_typed(event, "http://hl7.org/fhir/resource-types", "Consent")
    assert consent["what"] == {"reference": "Consent/c-9"}


def test_disclosure_kind_names_the_packet_entity() -> None:
    event = validated(disclosure(kind="cease-notice", fields=["referralId"], consent_ref=None))
    assert entity_typed(event, LOCAL_ENTITY_TYPE, "cease-notice")["detail"][0]["valueString"] == "referralId"
    assert not any(e["type"]["code"] == "Consent" for e in event["entity"])


@pytest.mark.parametrize(
    "overrides",
    [{"recipient_org": ""}, {"packet_id": ""}, {"fields": ["ok", ""]}, {"kind": "Referral Packet"}, {"outcome": 3}],
)
def test_disclosure_refuses_bad_input(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        disclosure(**overrides)


# --- consent decision (BALP AuthZconsent) ------------------------------------------------------


def consent_decision(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "recipient_org": VCSE,
        "patient_nhs": NHS,
        "decision": "permit",
        "consent_ref": "Consent/c-9",
        "categories": ["contact", "needs"],
        "reason": "active opt-in Consent names the recipient",
        "recorded": RECORDED,
    }
    args.update(overrides)
    return consent_decision_event(CTX, **args)


def test_consent_permit_follows_balp_authz_consent() -> None:
    event = validated(consent_decision())
    assert (event["type"]["system"], event["type"]["code"]) == (DCM, "110113")
    assert event["subtype"][0]["system"] == "https://profiles.ihe.net/ITI/BALP/CodeSystem/AuthZsubType"
    assert event["subtype"][0]["code"] == "AuthZ-Consent"
    assert event["action"] == "E"
    assert event["outcome"] == "0"
    assert event["outcomeDesc"] == "active opt-in Consent names the recipient"
    authorizer = agent_with(event, "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "authserver")
    assert authorizer["who"] == event["source"]["observer"]
    consent = entity_typed(event, "http://hl7.org/fhir/resource-types", "Consent")
    assert consent["what"] == {"reference": "Consent/c-9"}
    assert [d["valueString"] for d in consent["detail"]] == ["contact", "needs"]


def test_consent_deny_without_a_consent_on_record_is_a_failure_that_says_so() -> None:
    event = validated(consent_decision(decision="deny", consent_ref=None, reason="no Consent on record"))
    assert event["outcome"] == "4"
    consent = entity_typed(event, "http://hl7.org/fhir/resource-types", "Consent")
    assert consent["what"] == {"type": "Consent", "display": "no Consent on record"}


@pytest.mark.parametrize("overrides", [{"decision": "maybe"}, {"reason": ""}, {"categories": [""]}])
def test_consent_decision_refuses_bad_input(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        consent_decision(**overrides)


# --- authentication and system events ----------------------------------------------------------


def test_failed_token_request_is_audited_with_the_callers_address() -> None:
    ctx = AuditContext(source_ip="198.51.100.7", request_id="r-1")
    event = validated(auth_event(ctx, outcome=4, description="client assertion signature invalid", recorded=RECORDED))
    assert (event["type"]["system"], event["type"]["code"]) == (DCM, "110114")
    assert event["subtype"][0]["code"] == "110122"
    assert event["outcome"] == "4"
    caller = agent_with(event, DCM, "110150")
    assert caller["who"]["display"] == "unidentified client"
    assert caller["network"]["address"] == "198.51.100.7"


def test_successful_token_request_names_the_client() -> None:
    event = validated(auth_event(CTX, outcome=0, description=None, recorded=RECORDED))
    assert agent_with(event, DCM, "110150")["who"]["identifier"]["value"] == CTX.client_id
    assert "outcomeDesc" not in event


def test_worker_action_is_an_application_activity_by_the_gateway() -> None:
    event = validated(
        system_event(
            WORKER,
            activity="delivery-dead-lettered",
            outcome=8,
            description="gave up after 10 attempts",
            recorded=RECORDED,
            references=["Task/t-1", "ServiceRequest/sr-1"],
            patient_nhs=NHS,
        )
    )
    assert (event["type"]["system"], event["type"]["code"]) == (DCM, "110100")
    assert event["subtype"][0]["code"] == "delivery-dead-lettered"
    gateway = agent_with(event, DCM, "110150")
    assert gateway["who"]["display"] == "sp-gateway"
    assert gateway["requestor"] is True
    assert {e["what"].get("reference") for e in event["entity"]} >= {"Task/t-1", "ServiceRequest/sr-1"}


def test_cli_action_with_a_user_records_them_as_requestor() -> None:
    ctx = AuditContext(user="ig-officer-1")
    event = validated(
        system_event(ctx, activity="audit-export", outcome=0, description=None, recorded=RECORDED, action="R")
    )
    assert event["action"] == "R"
    requestors = [a for a in event["agent"] if a["requestor"]]
    assert [a["who"]["identifier"]["value"] for a in requestors] == ["ig-officer-1"]


@pytest.mark.parametrize("overrides", [{"activity": "Not A Token"}, {"action": "X"}, {"outcome": 2}])
def test_system_event_refuses_bad_input(overrides: dict[str, Any]) -> None:
    args: dict[str, Any] = {"activity": "audit-verify", "outcome": 0, "description": None, "recorded": RECORDED}
    args.update(overrides)
    with pytest.raises(ValueError):
        system_event(WORKER, **args)


# --- index fields ----------------------------------------------------------------------------


def test_index_fields_of_a_disclosure() -> None:
    assert index_fields(disclosure()) == {
        "recorded": RECORDED_TEXT,
        "type_code": "110106",
        "subtype_code": "disclose",
        "action": "R",
        "outcome": "0",
        "patient_nhs": NHS,
        "agent_orgs": sorted(["A81001", VCSE]),
        "entity_refs": sorted(
            [
                "Consent/c-9",
                "ServiceRequest/sr-1",
                f"{NHS_NUMBER}|{NHS}",
                "https://sp-gateway.dev/fhir/Id/packet-id|pkt-7",
                CTX.request_id or "",
                CTX.correlation_id or "",
            ]
        ),
        "recipient_org": VCSE,
    }


def test_index_fields_of_a_create_have_no_recipient() -> None:
    fields = index_fields(create_event())
    assert fields["type_code"] == "rest"
    assert fields["subtype_code"] == "create"
    assert fields["action"] == "C"
    assert fields["patient_nhs"] == NHS
    assert fields["agent_orgs"] == ["A81001"]
    assert "ServiceRequest/sr-1" in fields["entity_refs"]
    assert fields["recipient_org"] is None


def test_index_fields_of_a_consent_decision_name_the_recipient() -> None:
    fields = index_fields(consent_decision(recipient_org="Y12345"))
    assert fields["recipient_org"] == "Y12345"
    assert fields["agent_orgs"] == ["A81001", "Y12345"]
    assert fields["outcome"] == "0"


def test_index_fields_notice_an_edited_event() -> None:
    event = disclosure()
    edited = copy.deepcopy(event)
    next(a for a in edited["agent"] if a["who"].get("type") == "Organization")["who"]["identifier"]["value"] = "X"
    assert index_fields(edited)["recipient_org"] != index_fields(event)["recipient_org"]
    edited = copy.deepcopy(event)
    edited["entity"][0]["what"]["identifier"]["value"] = "9999999999"
    assert index_fields(edited)["patient_nhs"] == "9999999999"


def test_index_fields_are_total_over_a_mangled_event() -> None:
    mangled = {"resourceType": "AuditEvent", "type": "rest", "agent": [1, {"who": "x"}], "entity": {"what": 1}}
    assert index_fields(mangled) == {
        "recorded": None,
        "type_code": None,
        "subtype_code": None,
        "action": None,
        "outcome": None,
        "patient_nhs": None,
        "agent_orgs": [],
        "entity_refs": [],
        "recipient_org": None,
    }
    with pytest.raises(ValueError):
        index_fields([])  # type: ignore[arg-type]


def test_recorded_is_normalised_to_utc() -> None:
    same_moment = RECORDED.astimezone(UTC)
    assert create_event(recorded=same_moment)["recorded"] == create_event()["recorded"] == RECORDED_TEXT
