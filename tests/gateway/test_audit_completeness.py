"""Completeness of the audit (IG rule 4): every route of the application writes an AuditEvent of the
expected type, when it succeeds and when it is refused. A new route without an entry in ROUTES
fails the first test, so nothing can be added to the API without deciding how it is audited."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import func, select

from audit.store import AuditEntry
from gateway.api.fhir import READABLE
from tests.profiles.gp_message import referral_bundle

REST = "rest"  # audit-event-type#rest: FHIR RESTful interactions (BALP)
LOGIN = "110114"  # DCM User Authentication: the token endpoint
APPLICATION = "110100"  # DCM Application Activity: the non-FHIR APIs

# (method, path template) -> (demo client calling it, or None for public routes; the event type it writes)
ROUTES: dict[tuple[str, str], tuple[str | None, str]] = {
    ("GET", "/fhir/metadata"): (None, REST),
    ("POST", "/fhir/$process-message"): ("demo-gp", REST),
    ("POST", "/fhir/ServiceRequest"): ("demo-gp", REST),
    ("PUT", "/fhir/ServiceRequest/{resource_id}"): ("demo-gp", REST),
    ("GET", "/fhir/ServiceRequest/{resource_id}/$everything"): ("demo-gp", REST),
    ("POST", "/fhir/Consent"): ("demo-gp", REST),
    ("PUT", "/fhir/Consent/{resource_id}"): ("demo-gp", REST),
    ("GET", "/fhir/AuditEvent"): ("demo-ig", REST),
    ("GET", "/fhir/AuditEvent/{resource_id}"): ("demo-ig", REST),
    ("GET", "/fhir/OperationDefinition/{definition_id}"): (None, REST),
    **{
        (method, path.format(rtype=rtype)): ("demo-gp", REST)
        for rtype in READABLE  # the referral's own types and what a referral message carries beside it
        for method, path in (
            ("GET", "/fhir/{rtype}"),
            ("POST", "/fhir/{rtype}/_search"),
            ("GET", "/fhir/{rtype}/{{resource_id}}"),
            ("GET", "/fhir/{rtype}/{{resource_id}}/_history"),
            ("GET", "/fhir/{rtype}/{{resource_id}}/_history/{{version}}"),
        )
    },
    ("POST", "/oauth2/token"): (None, LOGIN),
    ("GET", "/oauth2/jwks"): (None, APPLICATION),
    ("GET", "/.well-known/smart-configuration"): (None, APPLICATION),
    ("GET", "/vcse/v1/referrals"): ("demo-vcse", APPLICATION),
    ("GET", "/vcse/v1/referrals/{referral_id}"): ("demo-vcse", APPLICATION),
    ("POST", "/vcse/v1/referrals/{referral_id}/status"): ("demo-vcse", APPLICATION),
    ("POST", "/vcse/v1/referrals/{referral_id}/outcomes"): ("demo-vcse", REST),
    ("GET", "/vcse/v1/notices"): ("demo-vcse", APPLICATION),
    ("POST", "/vcse/v1/referrals/{referral_id}/ack"): ("demo-vcse", APPLICATION),
    ("GET", "/vcse/v1/schema"): (None, APPLICATION),
    ("GET", "/vcse/v1/schema/{name}"): (None, APPLICATION),
    ("GET", "/admin/v1/organisations"): ("demo-admin", APPLICATION),
    ("PUT", "/admin/v1/organisations/{org_id}"): ("demo-admin", APPLICATION),
    ("POST", "/admin/v1/organisations/{org_id}/rotate-secret"): ("demo-admin", APPLICATION),
    ("GET", "/admin/v1/clients"): ("demo-admin", APPLICATION),
    ("POST", "/admin/v1/clients"): ("demo-admin", APPLICATION),
    ("POST", "/admin/v1/clients/{client_id}/disable"): ("demo-admin", APPLICATION),
    ("GET", "/admin/v1/outbox"): ("demo-admin", APPLICATION),
    ("POST", "/admin/v1/outbox/retry"): ("demo-admin", APPLICATION),
    ("GET", "/ig/v1/patients/{nhs_number}/disclosures"): ("demo-ig", APPLICATION),
    ("GET", "/ig/v1/audit/{seq}/proof"): ("demo-ig", REST),
    ("POST", "/ig/v1/organisations/{org_id}/agreement/approve"): ("demo-ig", APPLICATION),
    ("POST", "/hl7v2"): ("demo-gp", APPLICATION),
}
DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def served_routes(app) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path not in DOCS
        for method in operations
    }


def test_every_route_has_an_audit_expectation(app) -> None:
    served = served_routes(app)
    assert served - set(ROUTES) == set(), "routes with no audit expectation in ROUTES"
    assert set(ROUTES) - served == set(), "ROUTES names routes the app no longer serves"


def _types_written(engine, before: int) -> list[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [t for (t,) in conn.execute(select(AuditEntry.type_code).where(AuditEntry.seq >= before))]


def _size(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(AuditEntry)).scalar_one())


def _values(client, token_for) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Makes a real referral so that path parameters can name things that exist."""
    nhs = "9990001049"
    message = referral_bundle(nhs, "A81001", "8VC01", "AUDIT-WALK-1", ["8VC01"])
    stored = client.post(
        "/fhir/$process-message",
        json=message,
        headers=token_for("demo-gp", **{"Content-Type": "application/fhir+json"}),
    ).json()
    ids = {e["resource"]["resourceType"]: e["resource"]["id"] for e in stored["entry"]}
    packets = client.get("/vcse/v1/referrals", headers=token_for("demo-vcse")).json()["referrals"]
    return {
        "resource_id": ids["ServiceRequest"],
        "version": "1",
        "referral_id": packets[0]["referral_id"],
        "nhs_number": nhs,
        "seq": "0",
        "org_id": "8VC09",
        "client_id": "demo-gp-b",
        "name": "outcome-submission",
        "definition_id": "ServiceRequest-everything",
    }


def _call(client, method: str, path: str, headers: dict[str, str]) -> Any:  # type: ignore[no-untyped-def]
    if path == "/hl7v2":
        return client.post(
            path, content=b"MSH|^~\\&|X", headers={**headers, "Content-Type": "x-application/hl7-v2+er7"}
        )
    if path == "/oauth2/token":
        return client.post(path, data={"grant_type": "client_credentials"})
    if method in ("POST", "PUT"):
        return client.request(method, path, json={}, headers={**headers, "Content-Type": "application/json"})
    return client.request(method, path, headers=headers)


def test_every_route_writes_its_audit_event_when_called_and_when_refused(client, app, token_for) -> None:
    engine = app.state.spgw.engine
    values = _values(client, token_for)
    missing = []
    for (method, template), (caller, expected) in sorted(ROUTES.items()):
        path = template.format(**values)
        for who in [caller, None] if caller else [None]:
            headers = token_for(who) if who else {"X-Request-ID": str(uuid.uuid4())}
            before = _size(engine)
            response = _call(client, method, path, headers)
            assert response.status_code < 500, f"{method} {template} answered {response.status_code}"
            written = _types_written(engine, before)
            wanted = expected if who else (LOGIN if expected == LOGIN else written[:1] or ["nothing"])[0]
            if not written or (who and expected not in written):
                missing.append(
                    f"{method} {template} as {who or 'anonymous'} ({response.status_code}): "
                    f"wrote {written or 'nothing'}, expected {wanted}"
                )
    assert missing == []


def test_a_disclosure_event_lists_exactly_the_fields_in_the_packet(client, app, token_for) -> None:
    engine = app.state.spgw.engine
    message = referral_bundle("9990001057", "A81001", "8VC01", "AUDIT-F-1", ["8VC01"], given="Fieldcheck")
    client.post(
        "/fhir/$process-message",
        json=message,
        headers=token_for("demo-gp", **{"Content-Type": "application/fhir+json"}),
    )
    before = _size(engine)
    [packet] = [
        p
        for p in client.get("/vcse/v1/referrals", headers=token_for("demo-vcse")).json()["referrals"]
        if "Fieldcheck" in str(p)
    ]
    sent = sorted(f"{group}.{name}" for group in ("person", "referral") for name in packet.get(group, {}))
    with engine.connect() as conn:
        contents = [
            c
            for (c,) in conn.execute(
                select(AuditEntry.content).where(AuditEntry.seq >= before, AuditEntry.type_code == "110106")
            )
        ]
    disclosures = [json.loads(c) for c in contents if packet["packet_id"] in c]
    assert len(disclosures) == 1
    details = [d for e in disclosures[0]["entity"] for d in e.get("detail", []) if d.get("type") == "disclosed-field"]
    assert sorted(d["valueString"] for d in details) == sent
