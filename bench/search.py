"""Search benchmark: what a patient search costs with 1,000,000 stored referrals against 1,000.

docs/design.md target: at 1,000,000 stored referrals a patient search (`patient:identifier`, as a GP
system runs it) costs at most 1.5x what it costs at 1,000.

Two SQLite databases are filled with the same shape of data, N referrals each from 50 practices
(ServiceRequest rows with their real search tokens, written with bulk inserts rather than the
pipeline so that a million rows take minutes, not hours), then the same repository search the
FHIR route runs is timed for random patients as one practice would see them.

    .venv/bin/python bench/search.py                   # 1,000 and 1,000,000
    .venv/bin/python bench/search.py --large 100000    # a quicker look
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
from sqlmodel import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.auth.principal import ROLE_SCOPES, Principal, Role  # noqa: E402
from gateway.db import make_engine  # noqa: E402
from gateway.models import FhirResource, SearchToken  # noqa: E402
from gateway.schema import init_db  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.storage.repository import Repository  # noqa: E402
from gateway.storage.searchparams import index_tokens  # noqa: E402
from profiles.nhs_number import check_digit  # noqa: E402
from profiles.systems import NHS_NUMBER  # noqa: E402

PRACTICES = [f"P{n:05d}" for n in range(50)]
BATCH = 5000


def nhs_for(n: int) -> str:
    """Returns a valid (Modulus 11) NHS number of the 999 test range for patient n (n < 900,000)."""
    first_nine = f"999{n:06d}"
    digit = check_digit(first_nine)
    # A stem whose check digit would be 10 is never issued; its neighbour stands in (two patients share it).
    return first_nine + str(digit) if digit is not None else nhs_for(n + 1)


def service_request(i: int, nhs: str, practice: str) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "id": f"sr-{i}",
        "meta": {"versionId": "1", "lastUpdated": "2026-11-20T10:00:00.000Z"},
        "identifier": [{"system": f"https://{practice.lower()}.example.nhs.uk/referrals", "value": f"R-{i}"}],
        "status": "active",
        "intent": "plan",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "871731000000106"}]},
        "subject": {"reference": f"Patient/pt-{nhs}", "identifier": {"system": NHS_NUMBER, "value": nhs}},
        "authoredOn": "2026-11-20T10:00:00+00:00",
        "requester": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": practice}},
        "performer": [{"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "8VC01"}}],
        "note": [{"text": "Lives alone; would like to meet people"}],
    }


def fill(data: Path, count: int) -> tuple[object, list[tuple[str, str]]]:
    """Returns (engine, sample of (practice, nhs)) after storing `count` referrals."""
    settings = Settings(data_dir=data)
    engine = make_engine(settings)
    init_db(engine)
    now = time.time()
    from datetime import UTC, datetime

    stamp = datetime.now(UTC)
    samples: list[tuple[str, str]] = []
    rng = random.Random(7)
    with engine.begin() as conn:
        for start in range(0, count, BATCH):
            rows, tokens = [], []
            for i in range(start, min(count, start + BATCH)):
                practice = PRACTICES[i % len(PRACTICES)]
                nhs = nhs_for(i // 2)  # about two referrals a patient
                body = service_request(i, nhs, practice)
                rows.append(
                    {
                        "pk": i + 1,
                        "resource_type": "ServiceRequest",
                        "id": body["id"],
                        "version_id": 1,
                        "tenant": practice,
                        "audience": "8VC01",
                        "patient_nhs": nhs,
                        "date": stamp,
                        "status": "active",
                        "last_updated": stamp,
                        "content": orjson.dumps(body).decode(),
                    }
                )
                tokens.extend(
                    {"resource_pk": i + 1, "param": p, "system": s, "value": v}
                    for p, s, v in index_tokens("ServiceRequest", body)
                )
                if rng.random() < 200 / count:
                    samples.append((practice, nhs))
            conn.execute(FhirResource.__table__.insert(), rows)  # type: ignore[attr-defined]
            conn.execute(SearchToken.__table__.insert(), tokens)  # type: ignore[attr-defined]
            if (start // BATCH) % 20 == 19:
                print(f"  stored {start + BATCH:>9,} of {count:,}", flush=True)
    print(f"  ({time.time() - now:.0f} s)")
    return engine, samples


def time_searches(engine, samples: list[tuple[str, str]], rounds: int) -> float:  # type: ignore[no-untyped-def]
    """Returns the median seconds of one patient search (the repository call the FHIR route makes)."""
    timings = []
    with Session(engine) as session:
        for _ in range(rounds):
            for practice, nhs in samples:
                principal = Principal("bench", practice, Role.REFERRER, frozenset(ROLE_SCOPES[Role.REFERRER]))
                repo = Repository(session, principal)
                started = time.perf_counter()
                items, _ = repo.search(
                    "ServiceRequest", [("patient:identifier", f"{NHS_NUMBER}|{nhs}")], count=50, offset=0
                )
                timings.append(time.perf_counter() - started)
                assert items, "a sampled patient must be found"
    return statistics.median(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spgw-bench-search-"))
    results = {}
    for label, size in (("small", args.small), ("large", args.large)):
        print(f"{label}: {size:,} referrals")
        engine, samples = fill(work / label, size)
        time_searches(engine, samples[:20], 1)  # warm the page cache
        results[label] = time_searches(engine, samples[:100], args.rounds)
        print(f"  median patient search {results[label] * 1e6:,.0f} µs over {len(samples[:100])} patients")
    ratio = results["large"] / results["small"]
    print(
        json.dumps(
            {
                "small": args.small,
                "large": args.large,
                "small_us": round(results["small"] * 1e6),
                "large_us": round(results["large"] * 1e6),
                "ratio": round(ratio, 2),
                "target": 1.5,
            }
        )
    )
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
