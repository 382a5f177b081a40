"""The storage layer's tenant look-ups and uniqueness rules, on SQLite and PostgreSQL: filtered by tenant
in SQL with nothing cut off, and uniqueness held by the database (unique indexes), not by a check."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy.exc import IntegrityError

from gateway.db import transaction
from gateway.schema import init_db
from gateway.storage import consents, referrals, resources
from gateway.storage.repository import Repository
from gateway.storage.scope import ForTenant

NHS = "9990001006"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
A, B = ForTenant("A81001"), ForTenant("B82002")


def consent(n: int) -> dict:
    return {
        "resourceType": "Consent",
        "status": "active",
        "patient": {"identifier": {"system": NHS_SYSTEM, "value": NHS}},
        "dateTime": f"2026-11-{1 + n % 28:02d}T10:00:00Z",
    }


def patient() -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": NHS_SYSTEM, "value": NHS}]}


@pytest.fixture
def db(engine):
    init_db(engine)
    return engine


def test_a_tenants_consents_are_all_found_whatever_another_tenant_holds(db) -> None:
    with transaction(db) as session:
        gateway = Repository(session, None)
        mine = [gateway.create(consent(0), tenant=B.tenant, patient_nhs=NHS).resource["id"]]
        for n in range(600):  # another practice's flood, all newer than B's Consent
            gateway.create(consent(n), tenant=A.tenant, patient_nhs=NHS)
        mine.append(gateway.create(consent(1), tenant=B.tenant, patient_nhs=NHS).resource["id"])
    with transaction(db) as session:
        assert sorted(c["id"] for c in consents.of_patient(session, B, NHS)) == sorted(mine)
        assert len(consents.of_patient(session, A, NHS)) == 600  # no limit: a decision never sees part
        found = resources.by_token(session, B, "Consent", "patient:identifier", NHS_SYSTEM, NHS)
        assert sorted(s.resource["id"] for s in found) == sorted(mine)


def test_one_patient_per_nhs_number_per_tenant_is_a_unique_index(db) -> None:
    with transaction(db) as session:
        Repository(session, None).create(patient(), tenant=A.tenant, patient_nhs=NHS)
        Repository(session, None).create(patient(), tenant=B.tenant, patient_nhs=NHS)  # another tenant: fine
        Repository(session, None).create(consent(0), tenant=A.tenant, patient_nhs=NHS)  # not a Patient: fine
    with pytest.raises(IntegrityError), transaction(db) as session:
        Repository(session, None).create(patient(), tenant=A.tenant, patient_nhs=NHS)
    with transaction(db) as session:
        assert resources.patient(session, A, NHS) is not None


def test_a_business_identifier_is_claimed_once_per_tenant(db) -> None:
    sr = {"identifier": [{"system": "https://gp.example/referrals", "value": "R-1"}]}
    with transaction(db) as session:
        referrals.claim_identifiers(session, A, sr, "sr-1")
        referrals.claim_identifiers(session, B, sr, "sr-2")  # the same identifier at another practice
    with pytest.raises(referrals.IdentifierTaken) as taken, transaction(db) as session:
        referrals.claim_identifiers(session, A, sr, "sr-3")
    assert taken.value.service_request_id == "sr-1"
    with transaction(db) as session:
        assert referrals.identified(session, A, "https://gp.example/referrals", "R-1") == "sr-1"
        assert referrals.identified(session, B, "https://gp.example/referrals", "R-1") == "sr-2"


def test_the_transaction_that_loses_an_identifier_race_is_told_so(db) -> None:
    """Two transactions claim one identifier at once: the second waits for the first (a row lock on
    PostgreSQL, the write lock on SQLite) and, once it commits, is refused, never storing a second copy."""
    sr = {"identifier": [{"system": "https://gp.example/referrals", "value": "RACE-1"}]}
    first_claimed, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def first() -> None:
        with transaction(db) as session:
            referrals.claim_identifiers(session, A, sr, "sr-first")
            first_claimed.set()
            release.wait(30)

    def second() -> None:
        first_claimed.wait(30)
        try:
            with transaction(db) as session:
                referrals.claim_identifiers(session, A, sr, "sr-second")
            outcome["second"] = "stored"
        except referrals.IdentifierTaken as taken:
            outcome["second"] = taken.service_request_id

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    first_claimed.wait(30)
    time.sleep(0.5)  # the second is now waiting on the first's uncommitted claim
    release.set()
    for thread in threads:
        thread.join(60)
    assert outcome == {"second": "sr-first"}
