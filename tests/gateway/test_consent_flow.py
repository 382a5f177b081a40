"""Consent, minimum necessary and cancellation, proved through the HTTP API (docs/design.md, IG rules 1 and 2).

Each test drives the gateway as its users do: the GP posts a referral message and Consents
(/fhir), the VCSE host reads its packets and notices (/vcse/v1), the admin sets the data-sharing
agreement (/admin/v1). Runs on SQLite and on a throwaway PostgreSQL (the `client` fixture).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlmodel import Session, select

from consent.categories import DataCategory
from gateway.delivery import worker
from gateway.delivery.signing import verify
from gateway.models import OutboxMessage
from mappings.packet import DEFAULT_ALLOWED_FIELDS
from profiles import systems
from profiles.nhs_number import check_digit

GP_ODS = "A81001"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def nhs_number(seed: int) -> str:
    """Returns a valid (Modulus 11) NHS number in the 999 test range."""
    for n in range(seed, seed + 100):
        first_nine = f"999{n:06d}"
        digit = check_digit(first_nine)
        if digit is not None:
            return first_nine + str(digit)
    raise AssertionError("no valid NHS number near the seed")


def ircp(org: str) -> dict[str, Any]:
    return {
        "role": {"coding": [{"system": systems.V3_PARTICIPATION_TYPE, "code": "IRCP"}]},
        "reference": {"identifier": {"system": systems.ODS_CODE, "value": org}},
    }


def category_codes(*categories: DataCategory) -> list[dict[str, Any]]:
    return [{"coding": [c.coding()]} for c in categories]


def consent(nhs: str, *recipients: str, **provision: Any) -> dict[str, Any]:
    """Returns an R4 opt-in Consent naming `recipients` (docs/design.md "Consent"), with extra provision elements."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": systems.CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": systems.LOINC, "code": "59284-0"}]}],
        "patient": {"identifier": {"system": systems.NHS_NUMBER, "value": nhs}},
        "dateTime": "2026-11-20T10:00:00+00:00",
        "policyRule": {"coding": [{"system": systems.V3_ACT_CODE, "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "purpose": [{"system": systems.V3_ACT_REASON, "code": "TREAT"}],
            "action": [{"coding": [{"system": systems.CONSENT_ACTION, "code": "disclose"}]}],
            "actor": [ircp(r) for r in recipients],
            **provision,
        },
    }


def referral_message(
    nhs: str, host: str, *, consent_for: tuple[str, ...] | None = None, provision: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Returns a BaRS-style referral message addressed to `host`, with a Consent naming `consent_for`
    (no Consent when None) and a patient who has a date of birth and a street address."""
    nhs_identifier = {"system": systems.NHS_NUMBER, "value": nhs}
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": "urn:uuid:mh",
            "resource": {
                "resourceType": "MessageHeader",
                "eventCoding": {"system": systems.BARS_MESSAGE_EVENTS, "code": "servicerequest-request"},
                "reason": {"coding": [{"system": systems.BARS_MESSAGE_REASON, "code": "new"}]},
                "source": {"endpoint": f"{systems.ODS_CODE}|{GP_ODS}"},
                "sender": {"identifier": {"system": systems.ODS_CODE, "value": GP_ODS}},
                "focus": [{"reference": "urn:uuid:sr"}],
            },
        },
        {
            "fullUrl": "urn:uuid:sr",
            "resource": {
                "resourceType": "ServiceRequest",
                "identifier": [
                    {"system": "https://riverside.example.nhs.uk/referrals", "value": f"REF-{uuid.uuid4().hex[:12]}"}
                ],
                "status": "active",
                "intent": "plan",
                "code": {
                    "coding": [
                        {
                            "system": systems.SNOMED,
                            "code": systems.SP_REFERRAL,
                            "display": "Referral to social prescribing service",
                        }
                    ]
                },
                "subject": {"reference": "urn:uuid:pt", "identifier": nhs_identifier},
                "authoredOn": "2026-11-20T10:00:00+00:00",
                "requester": {"identifier": {"system": systems.ODS_CODE, "value": GP_ODS}},
                "performer": [{"identifier": {"system": systems.ODS_CODE, "value": host}}],
                "reasonCode": [{"coding": [{"system": systems.LOCAL_NEED_CATEGORY, "code": "social-isolation"}]}],
            },
        },
        {
            "fullUrl": "urn:uuid:pt",
            "resource": {
                "resourceType": "Patient",
                "identifier": [nhs_identifier],
                "name": [{"use": "official", "family": "Demo", "given": ["Ada"]}],
                "telecom": [{"system": "phone", "value": "07700900000", "use": "mobile"}],
                "birthDate": "1950-04-01",
                "gender": "female",
                "address": [{"use": "home", "line": ["1 Mill Lane"], "city": "Lincoln", "postalCode": "LN1 1AA"}],
            },
        },
    ]
    if consent_for is not None:
        body = consent(nhs, *consent_for, **(provision or {}))
        body["patient"] = {"reference": "urn:uuid:pt", "identifier": nhs_identifier}
        entries.append({"fullUrl": "urn:uuid:cn", "resource": body})
    return {"resourceType": "Bundle", "type": "message", "entry": entries}


def post_referral(client, token_for, message: dict[str, Any], gp: str = "demo-gp") -> dict[str, Any]:
    """Posts the message; returns the stored resources by type."""
    response = client.post("/fhir/$process-message", json=message, headers=token_for(gp, **FHIR_JSON))
    assert response.status_code == 200, response.text
    return {e["resource"]["resourceType"]: e["resource"] for e in response.json()["entry"]}


def task_for(client, token_for, service_request_id: str) -> dict[str, Any]:
    response = client.get(f"/fhir/Task?focus=ServiceRequest/{service_request_id}", headers=token_for("demo-gp"))
    assert response.status_code == 200, response.text
    tasks = [e["resource"] for e in response.json().get("entry", [])]
    assert len(tasks) == 1
    return tasks[0]


def referral_id_of(task: dict[str, Any]) -> str:
    return next(i["value"] for i in task["identifier"] if i["system"] == systems.LOCAL_REFERRAL_ID)


def host_referrals(client, token_for, host_client: str = "demo-vcse") -> dict[str, dict[str, Any]]:
    response = client.get("/vcse/v1/referrals", headers=token_for(host_client))
    assert response.status_code == 200, response.text
    return {r["referral_id"]: r for r in response.json()["referrals"]}


def notices(client, token_for, host_client: str = "demo-vcse") -> list[dict[str, Any]]:
    response = client.get("/vcse/v1/notices", headers=token_for(host_client))
    assert response.status_code == 200, response.text
    return response.json()["notices"]


def put_agreement(client, token_for, org: str, **fields: Any) -> dict[str, Any]:
    body = {"name": f"Host {org}", "kind": "vcse", **fields}
    response = client.put(f"/admin/v1/organisations/{org}", json=body, headers=token_for("demo-admin"))
    assert response.status_code == 200, response.text
    if "pending_agreement" in response.json():  # widening to identifying fields: the IG officer approves
        response = client.post(f"/ig/v1/organisations/{org}/agreement/approve", headers=token_for("demo-ig"))
        assert response.status_code == 200, response.text
    return response.json()


def consents_of(client, token_for, patient_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/fhir/Consent?patient=Patient/{patient_id}", headers=token_for("demo-gp"))
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


# --- no consent, wrong recipient, consent arriving later ---


def test_referral_without_consent_is_held_and_not_offered(client, token_for) -> None:
    stored = post_referral(client, token_for, referral_message(nhs_number(100), "8VC01"))

    task = task_for(client, token_for, stored["ServiceRequest"]["id"])
    assert task["status"] == "on-hold"
    assert "Not sent to 8VC01" in task["statusReason"]["text"]
    assert "no consent on record" in task["statusReason"]["text"]
    assert task["businessStatus"]["text"] == "awaiting consent"
    assert referral_id_of(task) not in host_referrals(client, token_for)
    read = client.get(f"/vcse/v1/referrals/{referral_id_of(task)}", headers=token_for("demo-vcse"))
    assert read.status_code == 404


def test_consent_naming_one_host_does_not_permit_another(client, token_for) -> None:
    message = referral_message(nhs_number(200), "8VC02", consent_for=("8VC01",))
    stored = post_referral(client, token_for, message)

    task = task_for(client, token_for, stored["ServiceRequest"]["id"])
    assert task["status"] == "on-hold"
    assert "no active consent names 8VC02" in task["statusReason"]["text"]
    assert host_referrals(client, token_for, "demo-vcse-b") == {}
    assert host_referrals(client, token_for, "demo-vcse") == {}


def test_consent_posted_later_releases_a_held_referral(client, token_for) -> None:
    nhs = nhs_number(300)
    stored = post_referral(client, token_for, referral_message(nhs, "8VC01"))
    referral_id = referral_id_of(task_for(client, token_for, stored["ServiceRequest"]["id"]))
    assert referral_id not in host_referrals(client, token_for)

    response = client.post("/fhir/Consent", json=consent(nhs, "8VC01"), headers=token_for("demo-gp", **FHIR_JSON))
    assert response.status_code == 201, response.text

    task = task_for(client, token_for, stored["ServiceRequest"]["id"])
    assert task["status"] == "requested"
    assert "statusReason" not in task
    assert task["businessStatus"]["text"] == "offered to 8VC01"
    packet = host_referrals(client, token_for)[referral_id]
    assert packet["status"] == "new"
    assert packet["person"]["first_name"] == "Ada"


# --- data categories withdrawn from consent ---


def test_category_left_out_of_provision_code_is_absent(client, token_for) -> None:
    """The root permit lists the categories it grants; contact details are not among them."""
    granted = category_codes(
        DataCategory.NEEDS_AND_CONCERNS, DataCategory.COMMUNICATION_AND_ACCESS, DataCategory.SAFEGUARDING
    )
    message = referral_message(nhs_number(400), "8VC01", consent_for=("8VC01",), provision={"code": granted})
    stored = post_referral(client, token_for, message)
    referral_id = referral_id_of(task_for(client, token_for, stored["ServiceRequest"]["id"]))

    packet = host_referrals(client, token_for)[referral_id]
    assert packet["referral"]["need_categories"] == ["Social isolation"]
    assert "person" not in packet  # first name and phone are contact-details: withheld
    assert "Ada" not in str(packet) and "07700900000" not in str(packet)


def test_nested_deny_provision_removes_its_category(client, token_for) -> None:
    deny_contact = {
        "provision": [{"type": "deny", "code": category_codes(DataCategory.CONTACT_DETAILS)}],
    }
    message = referral_message(nhs_number(500), "8VC01", consent_for=("8VC01",), provision=deny_contact)
    stored = post_referral(client, token_for, message)
    referral_id = referral_id_of(task_for(client, token_for, stored["ServiceRequest"]["id"]))

    packet = host_referrals(client, token_for)[referral_id]
    assert packet["referral"]["need_categories"] == ["Social isolation"]
    assert "first_name" not in packet.get("person", {})
    assert "contact_routes" not in packet.get("person", {})
    assert "Ada" not in str(packet) and "07700900000" not in str(packet)


# --- withdrawal after delivery ---


def _deliver_all(app, client_settings) -> list[httpx.Request]:
    """Runs the delivery worker once against an in-process receiver that answers 200; returns what it got."""
    seen: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(receiver)) as http:
        worker.run_once(app.state.spgw.engine, client_settings, http)
    return seen


def test_withdrawal_after_delivery_ceases_and_stops_disclosure(client, token_for, app, settings) -> None:
    registered = put_agreement(
        client, token_for, "8VC01", delivery_mode="webhook", webhook_url="http://crm.invalid/hook"
    )
    secret = registered["webhook_secret"]
    nhs = nhs_number(600)
    stored = post_referral(client, token_for, referral_message(nhs, "8VC01", consent_for=("8VC01",)))
    referral_id = referral_id_of(task_for(client, token_for, stored["ServiceRequest"]["id"]))

    delivered = _deliver_all(app, settings)
    assert [r.headers["X-SPGW-Packet-Id"] for r in delivered] == [
        host_referrals(client, token_for)[referral_id]["packet_id"]
    ]
    assert verify(secret, delivered[0].content, dict(delivered[0].headers))
    assert host_referrals(client, token_for)[referral_id]["person"]["first_name"] == "Ada"

    [given] = consents_of(client, token_for, stored["Patient"]["id"])
    withdrawn = {**given, "status": "inactive"}
    withdrawn.pop("meta", None)
    response = client.put(f"/fhir/Consent/{given['id']}", json=withdrawn, headers=token_for("demo-gp", **FHIR_JSON))
    assert response.status_code == 200, response.text

    # The host sees the referral as ceased, with no content, on its next read.
    view = host_referrals(client, token_for)[referral_id]
    assert view == {"referral_id": referral_id, "packet_id": view["packet_id"], "status": "ceased"}
    single = client.get(f"/vcse/v1/referrals/{referral_id}", headers=token_for("demo-vcse"))
    assert single.status_code == 200 and single.json()["status"] == "ceased" and "person" not in single.json()

    # A cease notice, with no personal data, in the notices and in the outbox for the webhook.
    [notice] = [n for n in notices(client, token_for) if n["referral_id"] == referral_id]
    assert notice["kind"] == "cease" and notice["reason"] == "consent-withdrawn"
    assert "person" not in notice and nhs not in str(notice) and "Ada" not in str(notice)
    with Session(app.state.spgw.engine) as session:
        rows = session.exec(select(OutboxMessage).where(OutboxMessage.kind == "cease")).all()
    assert [(r.target, r.dedup_key, r.status) for r in rows] == [("8VC01", notice["packet_id"], "pending")]

    task = task_for(client, token_for, stored["ServiceRequest"]["id"])
    assert task["status"] == "cancelled"
    assert "Consent ended" in task["statusReason"]["text"]

    # No later disclosure: the notice goes out, nothing else does, and a new referral is held.
    later = _deliver_all(app, settings)
    assert [r.headers["X-SPGW-Packet-Id"] for r in later] == [notice["packet_id"]]
    assert "Ada" not in later[0].content.decode()
    again = post_referral(client, token_for, referral_message(nhs, "8VC01"))
    assert task_for(client, token_for, again["ServiceRequest"]["id"])["status"] == "on-hold"
    assert _deliver_all(app, settings) == []
    assert all("person" not in r for r in host_referrals(client, token_for).values() if r["referral_id"] == referral_id)


def test_withdrawal_by_later_deny_consent_ceases_a_pull_host(client, token_for) -> None:
    nhs = nhs_number(700)
    stored = post_referral(client, token_for, referral_message(nhs, "8VC01", consent_for=("8VC01",)))
    referral_id = referral_id_of(task_for(client, token_for, stored["ServiceRequest"]["id"]))
    assert host_referrals(client, token_for)[referral_id]["status"] == "new"

    deny = consent(nhs, "8VC01")
    deny["dateTime"] = "2026-11-21T10:00:00+00:00"
    deny["policyRule"] = {"coding": [{"system": systems.V3_ACT_CODE, "code": "OPTOUT"}]}
    deny["provision"]["type"] = "deny"
    response = client.post("/fhir/Consent", json=deny, headers=token_for("demo-gp", **FHIR_JSON))
    assert response.status_code == 201, response.text

    assert host_referrals(client, token_for)[referral_id]["status"] == "ceased"
    assert "person" not in host_referrals(client, token_for)[referral_id]
    assert [n["kind"] for n in notices(client, token_for) if n["referral_id"] == referral_id] == ["cease"]


# --- the data-sharing agreement, field by field ---


def test_default_agreement_withholds_nhs_number_birth_date_and_address(client, token_for) -> None:
    nhs = nhs_number(800)
    stored = post_referral(client, token_for, referral_message(nhs, "8VC01", consent_for=("8VC01",)))
    referral_id = referral_id_of(task_for(client, token_for, stored["ServiceRequest"]["id"]))

    packet = host_referrals(client, token_for)[referral_id]
    person = packet["person"]
    assert person["first_name"] == "Ada"
    assert person["contact_routes"] == [{"type": "phone", "value": "07700900000", "use": "mobile"}]
    for withheld in ("nhs_number", "date_of_birth", "address", "gender"):
        assert withheld not in person
    text = str(packet)
    assert nhs not in text and "1950-04-01" not in text and "Mill Lane" not in text and "LN1 1AA" not in text


def test_agreement_allowing_nhs_number_discloses_exactly_that(client, token_for) -> None:
    allowed = sorted(DEFAULT_ALLOWED_FIELDS | {"person.nhs_number"})
    answer = put_agreement(client, token_for, "8VC01", allowed_fields=allowed)
    assert answer["data_sharing_agreement"]["allowed_fields"] == allowed
    # Consent for every category, including identifiers and demographics.
    nhs = nhs_number(900)
    stored = post_referral(client, token_for, referral_message(nhs, "8VC01", consent_for=("8VC01",)))
    referral_id = referral_id_of(task_for(client, token_for, stored["ServiceRequest"]["id"]))

    person = host_referrals(client, token_for)[referral_id]["person"]
    assert person["nhs_number"] == nhs
    assert "date_of_birth" not in person and "address" not in person and "gender" not in person


def test_agreement_without_a_field_withholds_it_even_when_consented(client, token_for) -> None:
    put_agreement(client, token_for, "8VC01", allowed_fields=["referral.need_categories", "person.date_of_birth"])
    stored = post_referral(client, token_for, referral_message(nhs_number(1000), "8VC01", consent_for=("8VC01",)))
    referral_id = referral_id_of(task_for(client, token_for, stored["ServiceRequest"]["id"]))

    packet = host_referrals(client, token_for)[referral_id]
    assert packet["person"] == {"date_of_birth": "1950-04-01"}
    assert packet["referral"] == {"need_categories": ["Social isolation"]}


# --- the GP cancels ---


def test_gp_cancellation_cancels_the_task_and_recalls_the_packet(client, token_for) -> None:
    stored = post_referral(client, token_for, referral_message(nhs_number(1100), "8VC01", consent_for=("8VC01",)))
    sr = stored["ServiceRequest"]
    referral_id = referral_id_of(task_for(client, token_for, sr["id"]))
    assert host_referrals(client, token_for)[referral_id]["status"] == "new"

    revoked = {k: v for k, v in sr.items() if k != "meta"} | {"status": "revoked"}
    response = client.put(f"/fhir/ServiceRequest/{sr['id']}", json=revoked, headers=token_for("demo-gp", **FHIR_JSON))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "revoked"

    task = task_for(client, token_for, sr["id"])
    assert task["status"] == "cancelled"
    assert "cancelled" in task["statusReason"]["text"]
    view = host_referrals(client, token_for)[referral_id]
    assert view["status"] == "recalled" and "person" not in view
    [notice] = [n for n in notices(client, token_for) if n["referral_id"] == referral_id]
    assert notice["kind"] == "recall" and notice["reason"] == "revoked"
    accept = client.post(
        f"/vcse/v1/referrals/{referral_id}/status", json={"status": "accepted"}, headers=token_for("demo-vcse")
    )
    assert accept.status_code == 409


def test_category_withdrawn_after_the_packet_was_built_is_not_disclosed(client, token_for) -> None:
    """A later deny for one category narrows what the host may see from then on (no cease: it keeps the rest)."""
    nhs = nhs_number(1200)
    stored = post_referral(client, token_for, referral_message(nhs, "8VC01", consent_for=("8VC01",)))
    referral_id = referral_id_of(task_for(client, token_for, stored["ServiceRequest"]["id"]))
    assert host_referrals(client, token_for)[referral_id]["person"]["first_name"] == "Ada"

    deny = consent(nhs, "8VC01", code=category_codes(DataCategory.CONTACT_DETAILS))
    deny["dateTime"] = "2026-11-21T10:00:00+00:00"
    deny["provision"]["type"] = "deny"
    response = client.post("/fhir/Consent", json=deny, headers=token_for("demo-gp", **FHIR_JSON))
    assert response.status_code == 201, response.text

    packet = host_referrals(client, token_for)[referral_id]
    assert packet["status"] == "new"
    assert packet["referral"]["need_categories"] == ["Social isolation"]
    assert "Ada" not in str(packet) and "07700900000" not in str(packet)
    assert notices(client, token_for) == []
