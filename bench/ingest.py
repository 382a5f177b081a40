"""Ingest benchmark: what one referral costs the whole in-process pipeline, against the library floor.

docs/design.md, "Non-functional targets": the whole pipeline per referral bundle costs at most 2x parsing
and validating that bundle with fhir.resources alone, same run.

    pipeline   what POST /fhir/$process-message does minus HTTP: parse_json, check_structure
               (R4B structure), then in one transaction accept_message: read_message (profile
               rules, NHS number, consent), store Patient, ServiceRequest, Consent, Task, Referral,
               the consent decision and the VCSE packet, and the audit events; commit on SQLite (WAL)
               in a temp folder
    floor      fhir.resources.R4B Bundle.model_validate_json(raw) on the same bytes

Both run over the same N bundles (the BaRS-style referral message in
tests/fixtures/fhir/sp-referral-message.json: 11 entries, addressed and consented to the demo VCSE
host 8VC01), each with its own valid NHS number, Bundle.id and referral identifier, so nothing is
de-duplicated. A warm-up (not timed) fills caches and the first database pages. The floor and the
pipeline are timed on each bundle in turn (interleaved), so drift on a busy machine counts against
neither side.

    .venv/bin/python bench/ingest.py               # N = 2000
    .venv/bin/python bench/ingest.py -n 500 --profile   # and where the pipeline's time goes (cProfile)

Exit status 0 when the ratio meets the target, 1 when it misses (the figures are printed either way).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir.resources.R4B.bundle import Bundle  # noqa: E402 -- after the sys.path line, to run from a checkout

from gateway.auth.principal import ROLE_SCOPES, Principal, Role  # noqa: E402
from gateway.context import RequestContext  # noqa: E402
from gateway.db import make_engine  # noqa: E402
from gateway.demo import seed_directory  # noqa: E402
from gateway.pipeline import referrals  # noqa: E402
from gateway.schema import init_db  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from profiles.nhs_number import check_digit  # noqa: E402
from profiles.referral import read_message  # noqa: E402
from profiles.structure import check_structure, parse_json  # noqa: E402

TEMPLATE = ROOT / "tests" / "fixtures" / "fhir" / "sp-referral-message.json"
TARGET = 2.0
GP_ODS, HOST_ODS = "A81001", "8VC01"


def nhs_numbers(count: int, start: int = 999_000_000) -> list[str]:
    """Returns `count` distinct valid NHS numbers in the 999 test range (Modulus 11)."""
    out: list[str] = []
    stem = start
    while len(out) < count:
        first_nine = f"{stem:09d}"
        digit = check_digit(first_nine)
        if digit is not None:
            out.append(first_nine + str(digit))
        stem += 1
    return out


def make_bundles(count: int) -> list[bytes]:
    """Returns `count` referral messages as raw JSON, each about a different patient and referral."""
    text = TEMPLATE.read_text(encoding="utf-8")
    # Address the fixture's VCSE organisation to the registered demo host, so the referral is dispatched.
    text = text.replace(
        "https://sp-gateway.dev/fhir/Id/vcse-organisation", "https://fhir.nhs.uk/Id/ods-organization-code"
    )
    text = text.replace('"lincoln-befriending"', f'"{HOST_ODS}"')
    template = json.loads(text)
    bundles = []
    for n, nhs in enumerate(nhs_numbers(count)):
        body = json.loads(json.dumps(template))
        body["id"] = str(uuid.uuid4())
        for entry in body["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "ServiceRequest":
                resource["identifier"][0]["value"] = f"BENCH-{n:07d}"
            for ident in [
                *resource.get("identifier", []),
                *(resource.get(k, {}).get("identifier") for k in ("subject", "patient")),
            ]:
                if ident and ident.get("system") == "https://fhir.nhs.uk/Id/nhs-number":
                    ident["value"] = nhs
        bundles.append(json.dumps(body).encode())
    return bundles


def floor(raw: bytes) -> None:
    Bundle.model_validate_json(raw)


def pipeline_for(ctx: RequestContext) -> Callable[[bytes], None]:
    def ingest(raw: bytes) -> None:
        body = parse_json(raw)
        check_structure(body, {"Bundle"})
        with ctx.transaction():
            referrals.accept_message(ctx, body)

    return ingest


def interleaved(
    floor_fn: Callable[[bytes], None],
    pipeline_fn: Callable[[bytes], None],
    bundles: list[bytes],
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[float], list[float]]:
    """Returns per-bundle seconds (floor, pipeline), timing the two on each bundle in turn, so that
    whatever else the machine is doing at that moment weighs on both sides alike."""
    floors, pipes = [], []
    for raw in bundles:
        t0 = clock()
        floor_fn(raw)
        t1 = clock()
        pipeline_fn(raw)
        t2 = clock()
        floors.append(t1 - t0)
        pipes.append(t2 - t1)
    return floors, pipes


def stage_costs(ctx: RequestContext, bundles: list[bytes]) -> dict[str, float]:
    """Returns seconds per bundle for each stage of the pipeline, timed one stage at a time."""
    costs = dict.fromkeys(("parse_json", "check_structure", "read_message", "accept_message"), 0.0)
    for raw in bundles:
        t0 = time.perf_counter()
        body = parse_json(raw)
        t1 = time.perf_counter()
        check_structure(body, {"Bundle"})
        t2 = time.perf_counter()
        read_message(body)
        t3 = time.perf_counter()
        with ctx.transaction():
            referrals.accept_message(ctx, body)  # read_message again, then store and commit
        t4 = time.perf_counter()
        for name, cost in zip(costs, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            costs[name] += cost
    return {k: v / len(bundles) for k, v in costs.items()}


def context(data_dir: Path) -> RequestContext:
    settings = Settings(data_dir=data_dir)
    engine = make_engine(settings)
    init_db(engine)
    seed_directory(engine, settings)
    principal = Principal("demo-gp", GP_ODS, Role.REFERRER, frozenset(ROLE_SCOPES[Role.REFERRER]))
    return RequestContext(engine, settings, principal, str(uuid.uuid4()), str(uuid.uuid4()), "http://bench.invalid")


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):  # not every system has /proc/cpuinfo
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.system()}"


def by_package(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Returns (where, own seconds) summed over every function, grouped by package or project folder."""
    totals: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        path = filename.replace("\\", "/")
        if "site-packages/" in path:
            where = path.split("site-packages/", 1)[1].split("/", 1)[0]
        elif path.startswith(str(ROOT)):
            where = "/".join(Path(path).relative_to(ROOT).parts[:2])
        elif filename == "~":
            where = f"builtin {name.split(' of ')[0]}" if "sqlite3" not in name else "sqlite3 (C)"
        else:
            where = "python stdlib"
        totals[where] = totals.get(where, 0.0) + own
    return sorted(totals.items(), key=lambda kv: -kv[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="referrals timed (default 2000)")
    parser.add_argument("--warmup", type=int, default=100, help="referrals run first and not timed (default 100)")
    parser.add_argument("--profile", action="store_true", help="also profile the pipeline (cProfile) and print the top")
    args = parser.parse_args(argv)
    if args.n < 1 or args.warmup < 0:
        parser.error("-n must be at least 1 and --warmup at least 0")

    extra = min(args.n, 500)
    bundles = make_bundles(args.warmup + args.n + 2 * extra + (extra if args.profile else 0))
    warm, timed_set = bundles[: args.warmup], bundles[args.warmup : args.warmup + args.n]
    rest = bundles[args.warmup + args.n :]
    cpu_set, stages_set, profile_set = rest[:extra], rest[extra : 2 * extra], rest[2 * extra :]
    size = sum(len(b) for b in timed_set) / len(timed_set)
    print(f"machine: {machine()}; load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"bundles: {args.n} timed + {args.warmup} warm-up, {size:,.0f} bytes each, 11 entries; SQLite (WAL)")

    with tempfile.TemporaryDirectory(prefix="spgw-bench-") as tmp:
        ctx = context(Path(tmp) / "data")
        ingest = pipeline_for(ctx)
        for raw in warm:
            floor(raw)
            ingest(raw)
        floors, pipes = interleaved(floor, ingest, timed_set)
        base, pipe = statistics.fmean(floors), statistics.fmean(pipes)
        ratio = pipe / base
        median_ratio = statistics.median(pipes) / statistics.median(floors)
        print(
            f"floor     fhir.resources R4B Bundle.model_validate_json: {base * 1e6:7.0f} µs per referral "
            f"(median {statistics.median(floors) * 1e6:.0f})"
        )
        print(
            f"pipeline  parse, structure, read_message, store, commit: {pipe * 1e6:7.0f} µs per referral "
            f"(median {statistics.median(pipes) * 1e6:.0f})"
        )
        verdict = "meets" if ratio <= TARGET else "MISSES"
        print(
            f"ratio     {ratio:.2f}x the floor, {median_ratio:.2f}x on medians ({verdict} the target of <= {TARGET:g}x)"
        )
        cpu_floors, cpu_pipes = interleaved(floor, ingest, cpu_set, clock=time.process_time)
        cpu_base, cpu_pipe = statistics.fmean(cpu_floors), statistics.fmean(cpu_pipes)
        print(
            f"cpu time  over {len(cpu_set)} more referrals: floor {cpu_base * 1e6:.0f} µs, pipeline "
            f"{cpu_pipe * 1e6:.0f} µs, ratio {cpu_pipe / cpu_base:.2f}x (less sensitive to other load on the machine)"
        )

        stages = stage_costs(ctx, stages_set)
        print(f"stages    over {len(stages_set)} more referrals, µs each (accept_message runs read_message again):")
        for name, cost in stages.items():
            print(f"          {name:<16} {cost * 1e6:7.0f}  ({cost / base:.2f}x floor)")

        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for raw in profile_set:
                ingest(raw)
            profiler.disable()
            stats = pstats.Stats(profiler)
            total = sum(own for _where, own in by_package(stats))
            print(f"profile   cProfile over {len(profile_set)} referrals, own time by package:")
            for where, own in by_package(stats)[:12]:
                print(f"          {where:<32} {own / total:6.1%}")
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
            print(out.getvalue())
        ctx.engine.dispose()
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
