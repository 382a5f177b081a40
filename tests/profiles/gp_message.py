"""A message Bundle as an outside GP system builds one (the shape an integrator's
external checks use), written here independently of the project's code: no Consent by default, the requester
a Practitioner reference, no performer unless a VCSE id is given, a Consent entry when consent
to named organisations is given."""

from __future__ import annotations

import uuid
from typing import Any

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def referral_bundle(
    nhs: str,
    gp_ods: str,
    vcse_id: str | None = None,
    ref_id: str = "REF-1",
    consent_to: list[str] | None = None,
    text: str = "Lives alone; would like to meet people",
    given: str = "Alex",
) -> dict[str, Any]:
    def uid(s: str) -> str:
        return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, ref_id + s))

    pat, sr, org, prac, mh, rcv = uid("p"), uid("sr"), uid("o"), uid("pr"), uid("mh"), uid("rcv")
    performer = {"performer": [{"identifier": {"system": ODS, "value": vcse_id}}]} if vcse_id else {}
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": mh,
            "resource": {
                "resourceType": "MessageHeader",
                "eventCoding": {
                    "system": "https://fhir.nhs.uk/CodeSystem/message-events-bars",
                    "code": "servicerequest-request",
                },
                "reason": {"coding": [{"system": "https://fhir.nhs.uk/CodeSystem/message-reason-bars", "code": "new"}]},
                "destination": [{"endpoint": f"{ODS}|{vcse_id or 'SPGW'}", "receiver": {"reference": rcv}}],
                "source": {"endpoint": f"{ODS}|{gp_ods}"},
                "sender": {"reference": org},
                "focus": [{"reference": sr}],
            },
        },
        {
            "fullUrl": sr,
            "resource": {
                "resourceType": "ServiceRequest",
                "identifier": [{"system": "https://gp.example.nhs.uk/referrals", "value": ref_id}],
                "status": "active",
                "intent": "plan",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "https://fhir.nhs.uk/CodeSystem/message-category-servicerequest",
                                "code": "referral",
                                "display": "Transfer of Care",
                            }
                        ]
                    }
                ],
                "code": {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": "871731000000106",
                            "display": "Referral to social prescribing service",
                        }
                    ]
                },
                "subject": {"reference": pat, "identifier": {"system": NHS, "value": nhs}},
                "authoredOn": "2026-11-20T10:00:00+00:00",
                "requester": {"reference": prac},
                **performer,
                "note": [{"text": text}],
            },
        },
        {
            "fullUrl": pat,
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": NHS, "value": nhs}],
                "name": [{"family": "Example", "given": [given]}],
                "gender": "unknown",
                "birthDate": "1950-02-03",
                "telecom": [{"system": "phone", "value": "07700900123", "use": "mobile"}],
                "address": [{"line": ["1 Test Street"], "city": "Lincoln", "postalCode": "LN1 1AA"}],
            },
        },
        {
            "fullUrl": prac,
            "resource": {"resourceType": "Practitioner", "name": [{"family": "Jones", "given": ["Sam"]}]},
        },
        {
            "fullUrl": org,
            "resource": {
                "resourceType": "Organization",
                "identifier": [{"system": ODS, "value": gp_ods}],
                "name": "Test Surgery",
            },
        },
        {
            "fullUrl": rcv,
            "resource": {
                "resourceType": "Organization",
                "identifier": [{"system": ODS, "value": vcse_id or "SPGW"}],
                "name": "Social prescribing service",
            },
        },
    ]
    if consent_to:
        entries.append({"fullUrl": uid("c"), "resource": consent(pat, nhs, consent_to)})
    return {"resourceType": "Bundle", "type": "message", "timestamp": "2026-11-20T10:00:00+00:00", "entry": entries}


def consent(patient_ref: str, nhs: str, orgs: list[str], status: str = "active") -> dict[str, Any]:
    """An R4 Consent: the patient agrees to share their referral with the named organisations."""
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": patient_ref, "identifier": {"system": NHS, "value": nhs}},
        "dateTime": "2026-11-20T10:00:00+00:00",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {
            "type": "permit",
            "period": {"start": "2026-11-20"},
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
            "action": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "disclose"}]}
            ],
            "actor": [
                {
                    "role": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}
                        ]
                    },
                    "reference": {"identifier": {"system": ODS, "value": o}},
                }
                for o in orgs
            ],
        },
    }
