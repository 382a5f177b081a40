"""The IG officer's HTTP surface after real referrals: AuditEvent search and read, the disclosure report
(JSON and CSV) and inclusion proofs, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from audit.merkle import leaf_hash
from gateway.demo import sample_message
from profiles import systems

NHS = "9990001006"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ENVELOPE = frozenset({"schema", "referrer"})  # object-valued packet keys that are not content fields


def _refer(client, token_for, *, host: str, nhs: str = NHS, ident: str = "REF-1") -> str:
    """Posts a referral message (consent naming `host`, performer `host`); returns the ServiceRequest id."""
    bundle = sample_message(nhs, "Ada", consent_to=[host], gp_ods="A81001", identifier=ident, performer=host)
    response = client.post(
        "/fhir/$process-message",
        json=bundle,
        headers={**token_for("demo-gp"), "Content-Type": "application/fhir+json"},
    )
    assert response.status_code == 200, response.text
    return next(
        e["resource"]["id"] for e in response.json()["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
    )


def _pull(client, token_for, vcse: str) -> list[dict[str, Any]]:
    response = client.get("/vcse/v1/referrals", headers=token_for(vcse))
    assert response.status_code == 200, response.text
    return response.json()["referrals"]


def _fields(packet: dict[str, Any]) -> list[str]:
    """The content field paths (group.name) a received packet carries."""
    return sorted(
        f"{group}.{name}"
        for group, value in packet.items()
        if isinstance(value, dict) and group not in ENVELOPE
        for name in value
    )


def _search(client, token_for, **params: str) -> dict[str, Any]:
    response = client.get("/fhir/AuditEvent", params=params, headers=token_for("demo-ig"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    return response.json()


def _events(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "AuditEvent"]


def _patient(event: dict[str, Any]) -> str | None:
    for entity in event.get("entity", []):
        identifier = entity.get("what", {}).get("identifier", {})
        if identifier.get("system") == systems.NHS_NUMBER:
            return identifier["value"]
    return None


def test_search_by_patient_finds_the_referral_and_its_disclosure(client, token_for) -> None:
    sr = _refer(client, token_for, host="8VC01")
    [packet] = _pull(client, token_for, "demo-vcse")
    events = _events(_search(client, token_for, **{"patient:identifier": f"{systems.NHS_NUMBER}|{NHS}"}))
    assert events and all(_patient(e) == NHS for e in events)
    codes = [e["type"]["code"] for e in events]
    assert "110106" in codes and "110113" in codes and "rest" in codes
    disclosure = next(e for e in events if e["type"]["code"] == "110106")
    assert any(
        en.get("what", {}).get("identifier", {}).get("value") == packet["packet_id"] for en in disclosure["entity"]
    )
    by_entity = _events(_search(client, token_for, entity=f"ServiceRequest/{sr}"))
    assert by_entity and all(f"ServiceRequest/{sr}" in str(e["entity"]) for e in by_entity)


def test_search_filters_by_type_agent_and_date(client, token_for) -> None:
    _refer(client, token_for, host="8VC01")
    _pull(client, token_for, "demo-vcse")
    disclosures = _events(_search(client, token_for, type=f"{DCM}|110106"))
    assert len(disclosures) == 1
    assert {e["type"]["code"] for e in _events(_search(client, token_for, agent="8VC01"))} >= {"110106", "110113"}
    assert _events(_search(client, token_for, agent="B82002")) == []
    today = datetime.now(UTC).date()
    everything = _events(_search(client, token_for, _count="500"))
    assert len(_events(_search(client, token_for, date=f"eq{today}", _count="500"))) > len(everything)
    assert _events(_search(client, token_for, date=f"ge{today + timedelta(days=1)}")) == []
    assert _events(_search(client, token_for, date=f"lt{today}")) == []
    window = _events(
        _search(client, token_for, date=[f"ge{today}", f"le{today}"], type="110106")  # type: ignore[arg-type]
    )
    assert [e["id"] for e in window] == [e["id"] for e in disclosures]


def test_search_pages_with_next_links(client, token_for) -> None:
    _refer(client, token_for, host="8VC01")
    _pull(client, token_for, "demo-vcse")
    _search(client, token_for, type="rest")  # each search adds an entry too
    first = _search(client, token_for, _count="2")
    relations = {link["relation"]: link["url"] for link in first["link"]}
    assert "next" in relations and "_count=2" in relations["next"] and "_offset=2" in relations["next"]
    second = client.get(relations["next"], headers=token_for("demo-ig")).json()
    ids_first, ids_second = [e["id"] for e in _events(first)], [e["id"] for e in _events(second)]
    assert len(ids_first) == 2 and ids_second and not set(ids_first) & set(ids_second)
    assert [int(i) for i in ids_first + ids_second] == sorted(int(i) for i in ids_first + ids_second)


def test_each_search_is_itself_audited(client, token_for) -> None:
    _search(client, token_for, **{"patient:identifier": f"{systems.NHS_NUMBER}|{NHS}"})
    found = _events(_search(client, token_for, subtype="search-type", _count="500"))
    audit_searches = [e for e in found if any(en.get("what", {}).get("type") == "AuditEvent" for en in e["entity"])]
    assert audit_searches and _patient(audit_searches[0]) == NHS
    assert NHS not in audit_searches[0]["outcomeDesc"]


def test_referrer_and_vcse_tokens_are_refused(client, token_for) -> None:
    for who in ("demo-gp", "demo-vcse"):
        response = client.get("/fhir/AuditEvent", headers=token_for(who))
        assert response.status_code == 403
        assert response.json()["resourceType"] == "OperationOutcome"
        assert client.get(f"/ig/v1/patients/{NHS}/disclosures", headers=token_for(who)).status_code == 403


def test_unknown_parameter_is_a_400_operation_outcome(client, token_for) -> None:
    response = client.get("/fhir/AuditEvent", params={"colour": "red"}, headers=token_for("demo-ig"))
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert "colour" in issue["diagnostics"] and issue["expression"] == ["colour"]
    bad_date = client.get("/fhir/AuditEvent", params={"date": "ge2026-13-45"}, headers=token_for("demo-ig"))
    assert bad_date.status_code == 400


def test_read_returns_the_stored_bytes_that_the_proof_covers(client, token_for) -> None:
    _refer(client, token_for, host="8VC01")
    response = client.get("/fhir/AuditEvent/1", headers=token_for("demo-ig"))
    assert response.status_code == 200 and response.json()["id"] == "1"
    proof = client.get("/ig/v1/audit/1/proof", headers=token_for("demo-ig")).json()
    assert proof["leaf_hash"] == leaf_hash(response.content).hex()
    assert client.get("/fhir/AuditEvent/999999", headers=token_for("demo-ig")).status_code == 404
    assert client.get("/ig/v1/audit/999999/proof", headers=token_for("demo-ig")).status_code == 404


def test_capability_statement_lists_audit_event(client) -> None:
    resources = {r["type"]: r for r in client.get("/fhir/metadata").json()["rest"][0]["resource"]}
    assert {i["code"] for i in resources["AuditEvent"]["interaction"]} == {"read", "search-type"}


def test_disclosure_report_lists_the_host_with_exactly_the_packet_fields(client, token_for) -> None:
    sr = _refer(client, token_for, host="8VC01")
    [packet] = _pull(client, token_for, "demo-vcse")
    response = client.get(f"/ig/v1/patients/{NHS}/disclosures", headers=token_for("demo-ig"))
    assert response.status_code == 200
    [disclosure] = response.json()["disclosures"]
    assert disclosure["recipient_org"] == "8VC01"
    assert disclosure["recipient_name"] == "Lincoln Befriending Network (demo)"
    assert sorted(disclosure["fields"]) == _fields(packet)
    assert disclosure["packet_id"] == packet["packet_id"]
    assert disclosure["referral"] == f"ServiceRequest/{sr}"
    assert disclosure["basis"].startswith("Consent/")
    assert disclosure["how"] == "pulled by the host"
    assert [d["decision"] for d in response.json()["consent_decisions"]] == ["permit", "permit"]

    as_csv = client.get(f"/ig/v1/patients/{NHS}/disclosures", params={"format": "csv"}, headers=token_for("demo-ig"))
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    [row] = [r for r in rows if r["Record"] == "disclosure"]
    assert row["Recipient organisation id"] == "8VC01"
    assert sorted(row["What was disclosed"].split("; ")) == _fields(packet)
    assert row["Packet id"] == packet["packet_id"] and row["How"] == "pulled by the host"


def test_report_shows_two_hosts_and_the_later_withdrawal(client, token_for) -> None:
    _refer(client, token_for, host="8VC01", ident="REF-A")
    _refer(client, token_for, host="8VC02", ident="REF-B")
    _pull(client, token_for, "demo-vcse")
    _pull(client, token_for, "demo-vcse-b")
    gp = {**token_for("demo-gp"), "Content-Type": "application/fhir+json"}
    consents = client.get(
        "/fhir/Consent", params={"patient:identifier": f"{systems.NHS_NUMBER}|{NHS}"}, headers=gp
    ).json()
    consent = next(e["resource"] for e in consents["entry"] if "8VC02" in str(e["resource"]["provision"]["actor"]))
    withdrawn = {k: v for k, v in consent.items() if k != "meta"} | {"status": "inactive"}
    response = client.put(f"/fhir/Consent/{consent['id']}", json=withdrawn, headers=gp)
    assert response.status_code == 200, response.text

    report = client.get(f"/ig/v1/patients/{NHS}/disclosures", headers=token_for("demo-ig")).json()
    assert sorted(d["recipient_org"] for d in report["disclosures"]) == ["8VC01", "8VC02"]
    last_disclosure = max(d["audit_entry"] for d in report["disclosures"])
    denials = [d for d in report["consent_decisions"] if d["decision"] == "deny"]
    assert [d["recipient_org"] for d in denials] == ["8VC02"]
    assert denials[0]["audit_entry"] > last_disclosure
    assert any(r["consent"] == f"Consent/{consent['id']}" for r in report["consent_records"])


def test_invalid_nhs_number_is_a_400(client, token_for) -> None:
    response = client.get("/ig/v1/patients/9990001007/disclosures", headers=token_for("demo-ig"))
    assert response.status_code == 400
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and "9990001007" not in body["issue"][0]["diagnostics"]
