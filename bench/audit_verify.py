"""Benchmark: audit-log verification against the raw SHA-256 floor over the same bytes.

Targets: the hashing pass runs at >= 0.7x raw SHA-256 throughput, the full verification at >= 0.4x;
it exits 1 below either, and prints both ratios as its last line.
It builds N real canonical AuditEvent entries in memory, then times
  (a) raw: one `hashlib.sha256(entry).digest()` per entry (the floor), and
  (b) verify: per entry the RFC 9162 leaf hash, a comparison with the stored leaf hash,
      and an append to an IncrementalTree; then the root, compared with the expected root,
and prints MB/s and entries/s for each and the ratio (b)/(a).

Two shapes of entry: `mixed` (default) is the request-path mix of referral creates,
consent decisions and disclosures with full caller context (about 3.4 KB each, since BALP
events carry coded agents and entities); `worker` is the smallest event the gateway
writes, a worker's Application Activity (about 1.1 KB). Per-entry overhead weighs most
on small entries, so `worker` is the harder case for the ratio.

    .venv/bin/python bench/audit_verify.py --entries 200000 [--shape worker]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from audit.canonical import canonical_json
from audit.events import (
    AuditContext,
    consent_decision_event,
    disclosure_event,
    rest_event,
    system_event,
)
from audit.merkle import IncrementalTree, leaf_hash, root_from_leaf_hashes
from audit.snapshot import read_snapshot
from audit.verify import _chain_pass, verify_log
from profiles.nhs_number import check_digit

HASHING_TARGET, FULL_TARGET = 0.7, 0.4

PACKET_FIELDS = [
    "referralId",
    "name.given",
    "contact.route",
    "contact.preferredTime",
    "language",
    "interpreterNeeded",
    "accessibilityNeeds",
    "needs.categories",
    "whatMattersToMe",
    "safeguardingFlag",
]


def nhs_number(rng: random.Random) -> str:
    """A random NHS number that passes Modulus 11."""
    while True:
        first_nine = f"{rng.randrange(10**9):09d}"
        digit = check_digit(first_nine)
        if digit is not None:
            return first_nine + str(digit)


def make_worker_entries(n: int, seed: int = 9162) -> list[bytes]:
    """Returns n canonical worker AuditEvents (delivery attempts): the smallest entries we write."""
    rng = random.Random(seed)
    start = datetime(2024, 4, 1, tzinfo=UTC)
    out: list[bytes] = []
    for i in range(n):
        event = system_event(
            AuditContext(correlation_id=f"{rng.getrandbits(128):032x}"),
            activity="delivery-attempted",
            outcome=rng.choice((0, 0, 0, 4)),
            description=None,
            recorded=start + timedelta(milliseconds=i * 37),
            references=[f"Task/t-{rng.randrange(10**6)}"],
        )
        event["id"] = str(i)
        out.append(canonical_json(event))
    return out


def make_entries(n: int, seed: int = 9162) -> list[bytes]:
    """Returns n canonical AuditEvent entries in the mix a busy gateway writes."""
    rng = random.Random(seed)
    start = datetime(2024, 4, 1, tzinfo=UTC)
    out: list[bytes] = []
    for i in range(n):
        ctx = AuditContext(
            client_id=f"gp-system-{rng.randrange(400):03d}",
            organisation=f"A{rng.randrange(10000, 99999)}",
            role="referrer",
            user=f"G{rng.randrange(10**6, 10**7)}",
            request_id=f"{rng.getrandbits(128):032x}",
            correlation_id=f"{rng.getrandbits(128):032x}",
            source_ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            routing_headers={"nhsd-target-identifier": f'{{"value":"X{rng.randrange(100)}"}}'},
        )
        recorded = start + timedelta(milliseconds=i * 37)
        patient = nhs_number(rng)
        kind = i % 3
        if kind == 0:
            event = rest_event(
                ctx,
                interaction="create",
                resource_type="ServiceRequest",
                resource_id=f"sr-{i}",
                outcome=0,
                patient_nhs=patient,
                description=None,
                recorded=recorded,
            )
        elif kind == 1:
            event = consent_decision_event(
                ctx,
                recipient_org=f"V{rng.randrange(1000)}",
                patient_nhs=patient,
                decision="permit",
                consent_ref=f"Consent/c-{i}",
                categories=["contact", "needs"],
                reason="active opt-in Consent names the recipient",
                recorded=recorded,
            )
        else:
            event = disclosure_event(
                ctx,
                recipient_org=f"V{rng.randrange(1000)}",
                patient_nhs=patient,
                referral_ref=f"ServiceRequest/sr-{i - 2}",
                packet_id=f"pkt-{i}",
                fields=rng.sample(PACKET_FIELDS, 6),
                consent_ref=f"Consent/c-{i - 1}",
                outcome=0,
                recorded=recorded,
            )
        event["id"] = str(i)
        out.append(canonical_json(event))
    return out


def raw_sha256(entries: list[bytes]) -> None:
    sha = hashlib.sha256
    for entry in entries:
        sha(entry).digest()


def verifier(stored: list[bytes], expected_root: bytes) -> Callable[[list[bytes]], None]:
    """Returns the full verification pass over entries whose stored leaf hashes are `stored`."""

    def verify(entries: list[bytes]) -> None:
        tree = IncrementalTree()
        append = tree.append
        for index, (entry, stored_leaf) in enumerate(zip(entries, stored, strict=True)):
            leaf = leaf_hash(entry)
            if leaf != stored_leaf:
                raise SystemExit(f"entry {index}: recomputed leaf hash differs from the stored one")
            append(leaf)
        if tree.root() != expected_root:
            raise SystemExit("root differs from the expected root")

    return verify


def best_of(runs: int, passes: list[Callable[[list[bytes]], None]], entries: list[bytes]) -> list[float]:
    """Returns each pass's fastest time in seconds; the passes alternate, so both see the same load."""
    best = [float("inf")] * len(passes)
    for _ in range(runs):
        for i, fn in enumerate(passes):
            gc.collect()
            t0 = time.perf_counter()
            fn(entries)
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def store_log(entries: list[bytes], folder: Path):  # type: ignore[no-untyped-def]
    """Returns an engine over a real SQLite audit log holding `entries` (bulk-inserted, as append would)."""
    from sqlalchemy import insert, update

    from audit.store import AuditEntry, AuditHead, index_columns
    from gateway.db import make_engine
    from gateway.schema import init_db
    from gateway.settings import Settings

    engine = make_engine(Settings(data_dir=folder))
    init_db(engine)
    with engine.begin() as conn:
        for start in range(0, len(entries), 5000):
            conn.execute(
                insert(AuditEntry.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "seq": start + i,
                        "leaf_hash": leaf_hash(e).hex(),
                        "content": e.decode(),
                        "archived_in": None,
                        **index_columns(orjson.loads(e)),
                    }
                    for i, e in enumerate(entries[start : start + 5000])
                ],
            )
        conn.execute(update(AuditHead.__table__).values(size=len(entries)))  # type: ignore[attr-defined]
    return engine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=200_000, help="number of audit entries (default 200000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each pass; the best counts")
    parser.add_argument("--shape", choices=("mixed", "worker"), default="mixed", help="which entries to build")
    args = parser.parse_args()

    t0 = time.perf_counter()
    entries = (make_entries if args.shape == "mixed" else make_worker_entries)(args.entries)
    stored = [leaf_hash(e) for e in entries]
    expected_root = root_from_leaf_hashes(stored)
    total = sum(map(len, entries))
    print(
        f"built {len(entries):,} {args.shape} entries, {total / 1e6:.1f} MB, mean {total / len(entries):.0f} bytes "
        f"in {time.perf_counter() - t0:.1f} s"
    )

    engine = store_log(entries, Path(tempfile.mkdtemp(prefix="spgw-bench-audit-")))

    def hashing_pass(_: list[bytes]) -> None:
        with read_snapshot(engine) as conn:
            chain = _chain_pass(conn, len(entries), None, None)
        if chain.failure is not None or chain.tree.root() != expected_root:
            raise SystemExit(f"the stored log did not verify: {chain.failure}")

    def full_verify(_: list[bytes]) -> None:
        report = verify_log(engine)
        if not report.ok or report.root != expected_root.hex():
            raise SystemExit(f"the stored log did not verify: {report.problem}")

    passes = [raw_sha256, verifier(stored, expected_root), hashing_pass, full_verify]
    raw_s, core_s, hashing_s, full_s = best_of(args.runs, passes, entries)
    rows = (
        ("raw sha256", raw_s, "the floor: one hashlib.sha256 per entry, bytes in memory"),
        ("core", core_s, "leaf hashes + tree over the same bytes in memory"),
        ("hashing pass", hashing_s, "spgw audit verify's hashing pass, read from the SQLite log"),
        ("full verify", full_s, "spgw audit verify: hashing pass + content pass (ids, search columns)"),
    )
    for label, seconds, what in rows:
        print(
            f"{label:>13}: {total / seconds / 1e6:8.1f} MB/s  {len(entries) / seconds:12,.0f} entries/s"
            f"  ({seconds:.3f} s)  ratio {raw_s / seconds:.2f}  {what}"
        )
    ratio, full_ratio = raw_s / hashing_s, raw_s / full_s
    met = ratio >= HASHING_TARGET and full_ratio >= FULL_TARGET
    print(
        f"ratio hashing pass/raw: {ratio:.2f} (target >= {HASHING_TARGET}); "
        f"full verify/raw: {full_ratio:.2f} (target >= {FULL_TARGET}) {'OK' if met else 'BELOW TARGET'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
