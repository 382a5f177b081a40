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
from gateway.pipeline import referrals
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


def _seed_referrals(engine: Engine, settings: Settings) -> None:
    gp = DEMO_CLIENTS[0]
    principal = Principal(gp.client_id, gp.organisation, gp.role, frozenset(ROLE_SCOPES[gp.role]))
    ctx = RequestContext(engine, settings, principal, None, None, "http://demo.invalid")
    for nhs, given, host in SAMPLE_REFERRALS:
        with ctx.transaction() as session:
            if session.exec(select(Referral).where(Referral.patient_nhs == nhs)).first() is not None:
                continue
            bundle = sample_message(nhs, given, host, gp.organisation)
            referrals.accept_message(ctx, bundle)


def sample_message(nhs: str, given: str, host: str, gp_ods: str) -> dict:
    """Returns a BaRS-style social prescribing referral message with consent to share with `host`."""
    ref = {"system": systems.NHS_NUMBER, "value": nhs}
    return {
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
                    "identifier": [{"system": "https://riverside.example.nhs.uk/referrals", "value": f"DEMO-{nhs}"}],
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
                    "reasonCode": [{"text": "Social isolation"}],
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
            {
                "fullUrl": "urn:uuid:cn",
                "resource": {
                    "resourceType": "Consent",
                    "status": "active",
                    "scope": {"coding": [{"system": systems.CONSENT_SCOPE, "code": "patient-privacy"}]},
                    "category": [{"coding": [{"system": systems.LOINC, "code": "59284-0"}]}],
                    "patient": {"reference": "urn:uuid:pt", "identifier": ref},
                    "dateTime": "2026-11-20T10:00:00+00:00",
                    "policyRule": {"coding": [{"system": systems.V3_ACT_CODE, "code": "OPTIN"}]},
                    "provision": {
                        "type": "permit",
                        "purpose": [{"system": systems.V3_ACT_REASON, "code": "TREAT"}],
                        "action": [{"coding": [{"system": systems.CONSENT_ACTION, "code": "disclose"}]}],
                        "actor": [
                            {
                                "role": {"coding": [{"system": systems.V3_PARTICIPATION_TYPE, "code": "IRCP"}]},
                                "reference": {"identifier": {"system": systems.ODS_CODE, "value": host}},
                            }
                        ],
                    },
                },
            },
        ],
    }
