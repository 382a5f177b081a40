"""Demo data for `spgw demo`: organisations, clients with their private keys under the data
folder, and a few sample referrals, so a newcomer can call every API within a minute.
Seeding is idempotent: a restart keeps what is there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select

from gateway.auth.clients import add_client
from gateway.auth.principal import ROLE_SCOPES, Principal, Role
from gateway.context import RequestContext
from gateway.models import Client, Referral
from gateway.organisations import upsert_organisation
from gateway.pipeline import consents as consent_flow
from gateway.pipeline import referrals, workflow
from gateway.settings import Settings
from profiles import systems


@dataclass(frozen=True)
class DemoClient:
    client_id: str
    organisation: str
    role: Role


DEMO_ORGANISATIONS = (
    ("A81001", "Riverside Surgery (demo)", "gp-practice"),
    ("B82002", "Hillside Medical Practice (demo)", "gp-practice"),
    ("8VC01", "Lincoln Befriending Network (demo)", "vcse"),
    ("8VC02", "Citywide Debt and Housing Advice (demo)", "vcse"),
    ("QJM", "Demo Integrated Care Board", "icb"),
)
DEMO_CLIENTS = (
    DemoClient("demo-gp", "A81001", Role.REFERRER),
    DemoClient("demo-gp-b", "B82002", Role.REFERRER),
    DemoClient("demo-vcse", "8VC01", Role.VCSE),
    DemoClient("demo-vcse-b", "8VC02", Role.VCSE),
    DemoClient("demo-ig", "QJM", Role.IG_OFFICER),
    DemoClient("demo-admin", "QJM", Role.ADMIN),
)
# (NHS number in the 999 test range, given name, host) — fictitious people.
SAMPLE_REFERRALS = (
    ("9990001006", "Ada", "8VC01"),
    ("9990001014", "Bram", "8VC02"),
)
TWO_HOST_PATIENT = ("9990001022", "Cleo")


def key_path(settings: Settings, client_id: str) -> Path:
    return settings.data_dir / "demo-keys" / f"{client_id}.jwk.json"


def seed(engine: Engine, settings: Settings) -> list[DemoClient]:
    """Registers the demo organisations and clients (writing their keys) and sample referrals."""
    seed_directory(engine, settings)
    _seed_referrals(engine, settings)
    return list(DEMO_CLIENTS)


def seed_directory(engine: Engine, settings: Settings) -> None:
    """Registers the demo organisations and clients, writing each client's private key under the data folder."""
    with Session(engine) as session:
        for org_id, name, kind in DEMO_ORGANISATIONS:
            upsert_organisation(session, org_id=org_id, name=name, kind=kind)
        for demo in DEMO_CLIENTS:
            if session.get(Client, demo.client_id) is None:
                path = key_path(settings, demo.client_id)
                path.unlink(missing_ok=True)
                add_client(
                    session,
                    client_id=demo.client_id,
                    organisation_id=demo.organisation,
                    role=demo.role,
                    private_key_out=path,
                )
        session.commit()


def _context(engine: Engine, settings: Settings, demo: DemoClient) -> RequestContext:
    principal = Principal(demo.client_id, demo.organisation, demo.role, frozenset(ROLE_SCOPES[demo.role]))
    return RequestContext(engine, settings, principal, None, None, "http://demo.invalid")


def _seed_referrals(engine: Engine, settings: Settings) -> None:
    gp = DEMO_CLIENTS[0]
    ctx = _context(engine, settings, gp)
    with ctx.transaction() as session:
        if session.exec(select(Referral).where(Referral.tenant == gp.organisation)).first() is not None:
            return  # seeded before
        for index, (nhs, given, host) in enumerate(SAMPLE_REFERRALS):
            referrals.accept_message(ctx, sample_message(nhs, given, [host], gp.organisation, f"DEMO-{index}"))
    _seed_two_hosts_then_withdrawal(engine, settings)


def _seed_two_hosts_then_withdrawal(engine: Engine, settings: Settings) -> None:
    """A demo patient referred to both hosts, who both read their packets, and who then withdrew
    consent from the second: the IG disclosure report for them shows all three facts."""
    nhs, given = TWO_HOST_PATIENT
    gp_client = DEMO_CLIENTS[0]
    gp = _context(engine, settings, gp_client)
    hosts = [h.organisation for h in DEMO_CLIENTS if h.role is Role.VCSE]
    with gp.transaction():
        for index, host in enumerate(hosts):
            message = sample_message(
                nhs, given, hosts if index == 0 else [], gp_client.organisation, f"DEMO-TWO-{index}", performer=host
            )
            referrals.accept_message(gp, message)
    for host_client in (h for h in DEMO_CLIENTS if h.role is Role.VCSE):
        vcse = _context(engine, settings, host_client)
        with vcse.transaction():
            workflow.list_packets(vcse, None)
    with gp.transaction():
        consent_flow.create(gp, withdrawal(nhs, hosts[1], "2026-11-21T09:00:00+00:00"))


def withdrawal(nhs: str, host: str, when: str) -> dict:
    """Returns a Consent by which the patient withdraws sharing with `host` (provision.type deny)."""
    consent = _consent({"system": systems.NHS_NUMBER, "value": nhs}, [host], when)
    consent["provision"]["type"] = "deny"
    return consent


def sample_message(
    nhs: str, given: str, consent_to: list[str], gp_ods: str, identifier: str, performer: str | None = None
) -> dict:
    """Returns a BaRS-style social prescribing referral message with consent to share with `consent_to`."""
    host = performer or consent_to[0]
    ref = {"system": systems.NHS_NUMBER, "value": nhs}
    message = {
        "resourceType": "Bundle",
        "type": "message",
        "entry": [
            {
                "fullUrl": "urn:uuid:mh",
                "resource": {
                    "resourceType": "MessageHeader",
                    "eventCoding": {"system": systems.BARS_MESSAGE_EVENTS, "code": "servicerequest-request"},
                    "reason": {"coding": [{"system": systems.BARS_MESSAGE_REASON, "code": "new"}]},
                    "source": {"endpoint": f"{systems.ODS_CODE}|{gp_ods}"},
                    "sender": {"identifier": {"system": systems.ODS_CODE, "value": gp_ods}},
                    "focus": [{"reference": "urn:uuid:sr"}],
                },
            },
            {
                "fullUrl": "urn:uuid:sr",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "identifier": [{"system": "https://riverside.example.nhs.uk/referrals", "value": identifier}],
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
                    "subject": {"reference": "urn:uuid:pt", "identifier": ref},
                    "authoredOn": "2026-11-20T10:00:00+00:00",
                    "requester": {"identifier": {"system": systems.ODS_CODE, "value": gp_ods}},
                    "performer": [{"identifier": {"system": systems.ODS_CODE, "value": host}}],
                    "reasonCode": [
                        {
                            "coding": [
                                {
                                    "system": systems.LOCAL_NEED_CATEGORY,
                                    "code": "social-isolation",
                                    "display": "Social isolation",
                                }
                            ]
                        }
                    ],
                },
            },
            {
                "fullUrl": "urn:uuid:pt",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [ref],
                    "name": [{"use": "official", "family": "Demo", "given": [given]}],
                    "telecom": [{"system": "phone", "value": "07700900000", "use": "mobile"}],
                },
            },
        ],
    }
    if consent_to:
        consent = _consent(ref, consent_to, "2026-11-20T10:00:00+00:00")
        consent["patient"]["reference"] = "urn:uuid:pt"
        message["entry"].append({"fullUrl": "urn:uuid:cn", "resource": consent})
    return message


def _consent(patient: dict, recipients: list[str], when: str) -> dict:
    """Returns an R4 opt-in Consent to share the referral with the named organisations (docs/design.md)."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": systems.CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": systems.LOINC, "code": "59284-0"}]}],
        "patient": {"identifier": patient},
        "dateTime": when,
        "policyRule": {"coding": [{"system": systems.V3_ACT_CODE, "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "purpose": [{"system": systems.V3_ACT_REASON, "code": "TREAT"}],
            "action": [{"coding": [{"system": systems.CONSENT_ACTION, "code": "disclose"}]}],
            "actor": [
                {
                    "role": {"coding": [{"system": systems.V3_PARTICIPATION_TYPE, "code": "IRCP"}]},
                    "reference": {"identifier": {"system": systems.ODS_CODE, "value": org}},
                }
                for org in recipients
            ],
        },
    }
