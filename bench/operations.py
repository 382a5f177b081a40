"""Operations benchmarks on PostgreSQL (a throwaway server started from the server binaries, as the
test suite does), each a ratio or a latency measured in this run:

1. workers: referrals/s through `spgw serve --workers 2` against `--workers 1` (same wrk load,
   same Lua script as bench/http_throughput.py: a distinct valid referral per request). Target >= 1.6x.
2. p99: referral create latency at a steady 50 referrals/s (open loop: latency is measured from
   each request's scheduled send time, so a stall is not hidden by waiting for it). Target < 50 ms.
3. outbox: 10,000 queued packets to 10 receivers, drained by `spgw worker --concurrency 4`; the rate
   at which nine receivers are served with the tenth down (connection refused) against all ten up.
   Target >= 0.8x.

    .venv/bin/python bench/operations.py                 # all three
    .venv/bin/python bench/operations.py --only p99 --seconds 20

Needs PostgreSQL's server binaries (initdb, pg_ctl) and `wrk`; exits 2 without them. Exits 1 when a
target is missed; prints one JSON line of figures last.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.http_throughput import LUA, body_template, free_port, run_wrk  # noqa: E402
from tests.support.postgres import start_server  # noqa: E402

SPGW = Path(sys.executable).parent / "spgw"


def fresh_database(server, name: str) -> str:  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine, text

    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.url(name)


def prepare(data: Path, url: str) -> dict[str, str]:
    """`spgw migrate` plus the demo directory; returns the environment every process of this run uses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPGW_")}
    env.update(SPGW_DATA_DIR=str(data), SPGW_DATABASE_URL=url, AUTHLIB_INSECURE_TRANSPORT="1")
    subprocess.run([str(SPGW), "migrate"], env=env, check=True, capture_output=True)
    from gateway.db import make_engine
    from gateway.demo import seed_directory
    from gateway.settings import Settings

    settings = Settings(data_dir=data, database_url=url)
    engine = make_engine(settings)
    seed_directory(engine, settings)
    engine.dispose()
    return env


class Serve:
    """`spgw serve --workers N` on a free port until stopped."""

    def __init__(self, env: dict[str, str], workers: int):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(env, SPGW_PUBLIC_BASE_URL=self.base)
        args = ["serve", "--port", str(self.port), "--workers", str(workers)]
        self.proc = subprocess.Popen(
            [str(SPGW), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):  # not listening yet
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("spgw serve did not become ready")
            time.sleep(0.3)
        self.token = subprocess.run(
            [str(SPGW), "token", "demo-gp", "--url", self.base],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def stop(self) -> None:
        import signal

        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def bench_workers(server, work: Path, seconds: int, connections: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    rates = {}
    for workers in (1, 2):
        env = prepare(work / f"w{workers}", fresh_database(server, f"bench_w{workers}"))
        gw = Serve(env, workers)
        try:
            run_env = dict(os.environ, BENCH_BODY=str(work / "body.json"), BENCH_DIR=str(work), BENCH_TOKEN=gw.token)
            run_wrk(gw.base, run_env, 2, connections)  # warm-up
            rates[workers] = run_wrk(gw.base, run_env, seconds, connections)
        finally:
            gw.stop()
        print(f"  --workers {workers}: {rates[workers]:8.1f} referrals/s")
    return {"one_worker_rps": rates[1], "two_workers_rps": rates[2], "workers_ratio": rates[2] / rates[1]}


def bench_p99(server, work: Path, seconds: int, rate: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    env = prepare(work / "p99", fresh_database(server, "bench_p99"))
    gw = Serve(env, 2)
    template = body_template()
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    http = httpx.Client(base_url=gw.base, timeout=30, limits=httpx.Limits(max_connections=64))

    def one(n: int, due: float) -> None:
        nonlocal failures
        nhs = _nhs(100000 + n * 7)
        body = template.replace("__NHS__", nhs).replace("__REF__", f"P99-{n}-{uuid.uuid4().hex[:6]}")
        headers = {
            "Authorization": f"Bearer {gw.token}",
            "Content-Type": "application/fhir+json",
            "X-Request-ID": str(uuid.uuid4()),
            "X-Correlation-ID": str(uuid.uuid4()),
        }
        response = http.post("/fhir/$process-message", content=body, headers=headers)
        took = time.perf_counter() - due
        with lock:
            latencies.append(took)
            failures += response.status_code != 200

    try:
        total = int(seconds * rate)
        with ThreadPoolExecutor(max_workers=32) as pool:
            for _ in range(int(rate)):  # warm-up second, not measured
                pool.submit(http.post, "/fhir/metadata")
            start = time.perf_counter() + 0.5
            for n in range(total):
                due = start + n / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                pool.submit(one, n, due)
    finally:
        http.close()
        gw.stop()
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"  {len(latencies)} referrals at {rate:.0f}/s: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"{failures} not 200"
    )
    return {"p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "steady_rate": rate, "non_200": failures}


def _nhs(n: int) -> str:
    while True:
        body = f"9{n % 100000000:08d}"
        check = 11 - sum(int(d) * (10 - i) for i, d in enumerate(body)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return body + str(check)
        n += 1


class Receiver:
    """A webhook receiver that answers 204 to everything and counts what it got."""

    def __init__(self) -> None:
        self.count = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.count += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                """Silent: the benchmark counts requests, it does not log them."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def bench_outbox(server, work: Path, packets: int, concurrency: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select
    from sqlmodel import Session

    from gateway.db import make_engine, transaction
    from gateway.models import OutboxMessage
    from gateway.organisations import upsert_organisation
    from gateway.settings import Settings

    receivers = [Receiver() for _ in range(10)]
    closed_port = free_port()  # nothing listens there: the "down" receiver refuses connections
    rates = {}
    for case in ("all up", "one down"):
        name = "bench_outbox_" + case.replace(" ", "_")
        url = fresh_database(server, name)
        env = prepare(work / name, url)
        engine = make_engine(Settings(data_dir=work / name, database_url=url))
        targets = [f"8BX{i:02d}" for i in range(10)]
        with transaction(engine) as session:
            for i, target in enumerate(targets):
                hook = (
                    receivers[i].url if not (case == "one down" and i == 0) else f"http://127.0.0.1:{closed_port}/hook"
                )
                upsert_organisation(
                    session, org_id=target, name=target, kind="vcse", delivery_mode="webhook", webhook_url=hook
                )
        now = datetime.now(UTC)
        rows = [
            {
                "kind": "recall",
                "target": targets[n % 10],
                "dedup_key": f"{name}-{n}",
                "body": "{}",
                "content_type": "application/json",
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created": now,
            }
            for n in range(packets)
        ]
        with transaction(engine) as session:
            session.execute(OutboxMessage.__table__.insert(), rows)  # type: ignore[attr-defined]
        live = targets[1:]
        expected = sum(1 for r in rows if r["target"] in live)
        worker = subprocess.Popen(
            [str(SPGW), "worker", "--concurrency", str(concurrency), "--interval", "0.2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started = time.perf_counter()
        try:
            while True:
                with Session(engine) as session:
                    done = session.execute(
                        select(func.count()).where(
                            OutboxMessage.status == "delivered",
                            OutboxMessage.target.in_(live),  # type: ignore[attr-defined]
                        )
                    ).scalar()
                if done >= expected:
                    break
                if time.perf_counter() - started > 900:
                    raise SystemExit(f"outbox ({case}): {done} of {expected} delivered after 900 s")
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
        finally:
            import signal

            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(20)
            engine.dispose()
        rates[case] = expected / elapsed
        print(f"  outbox, {case}: {expected} packets to nine receivers in {elapsed:.1f} s ({rates[case]:.0f}/s)")
    return {
        "outbox_all_up_rps": rates["all up"],
        "outbox_one_down_rps": rates["one down"],
        "outbox_ratio": rates["one down"] / rates["all up"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["workers", "p99", "outbox"], default=None)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--packets", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk): benchmark skipped")
        return 2
    server = start_server()
    if server is None:
        print("PostgreSQL server binaries are not installed: benchmark skipped")
        return 2
    work = Path(tempfile.mkdtemp(prefix="spgw-bench-ops-"))
    (work / "post.lua").write_text(LUA)
    (work / "body.json").write_text(body_template())
    figures: dict[str, float] = {}
    missed = []
    try:
        if args.only in (None, "workers"):
            figures |= bench_workers(server, work, args.seconds, args.connections)
            if figures["workers_ratio"] < 1.6:
                missed.append("workers")
        if args.only in (None, "p99"):
            figures |= bench_p99(server, work, args.seconds, args.rate)
            if figures["p99_ms"] >= 50:
                missed.append("p99")
        if args.only in (None, "outbox"):
            figures |= bench_outbox(server, work, args.packets, args.concurrency)
            if figures["outbox_ratio"] < 0.8:
                missed.append("outbox")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    figures = {k: round(v, 3) for k, v in figures.items()}
    print(json.dumps({**figures, "missed": missed}))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
