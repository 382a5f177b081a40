"""HTTP benchmark: referrals per second through the real gateway against bare FastAPI endpoints,
same server (uvicorn, httptools + uvloop), same worker count, same load generator (wrk and one Lua
script), in the same run, the sides interleaved round by round (the best round of each side counts):

- durable bare (`bare_app.durable`): validates the bundle with fhir.resources, inserts it as one row and
  commits, in the same database as the gateway. Target: the gateway serves >= 0.5x of it (0.7x is the goal).
- parse-only bare (`bare_app.app`): validates and answers; its ratio is printed for comparison.
- with `--database postgresql` (a throwaway server started from the server binaries, as the test suite
  does): the gateway with 2 worker processes against 1. Target >= 1.6x.

Each request carries a distinct referral (its own valid NHS number, identifier and X-Request-ID,
made by the wrk Lua script), so the gateway stores every one; the bare endpoints get the same bytes.

    .venv/bin/python bench/http_throughput.py                         # SQLite, 3 rounds of 5 s per side
    .venv/bin/python bench/http_throughput.py --database postgresql --seconds 10 --rounds 2

Needs `wrk` (Debian package `wrk`), and PostgreSQL's server binaries for `--database postgresql`;
says so and exits 2 without them. Exits 1 when a target is missed; the ratio is the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "referral-message.json"
SPGW = Path(sys.executable).parent / "spgw"
TARGET, GOAL, WORKERS_TARGET = 0.5, 0.7, 1.6

# wrk script: each request gets a fresh NHS number (Modulus 11 valid), referral identifier and request id.
# Every wrk thread has its own Lua state and, unseeded, the same random sequence: each is numbered in
# setup() and seeds with its number, so two threads never send the same referral at once.
LUA = r"""
counter = 0
template = nil
token = os.getenv("BENCH_TOKEN")
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  local f = io.open(os.getenv("BENCH_BODY"), "r"); template = f:read("*a"); f:close()
  math.randomseed(os.time() * 1000 + tid)
  counter = tid * 20000000 + math.random(1, 10000000)
end
local function nhs(n)
  while true do
    local body = string.format("9%08d", n % 100000000)
    local total = 0
    for i = 1, 9 do total = total + tonumber(body:sub(i, i)) * (11 - i) end
    local check = 11 - total % 11
    if check == 11 then check = 0 end
    if check ~= 10 then return body .. check, n end
    n = n + 1
  end
end
function request()
  local number
  number, counter = nhs(counter + 1)
  local body = template:gsub("__NHS__", number):gsub("__REF__", "BENCH-" .. counter .. "-" .. math.random(1, 1e9))
  local headers = {["Content-Type"] = "application/fhir+json",
                   ["X-Request-ID"] = string.format("%08x-0000-4000-8000-%012x", math.random(0, 0xffffffff), counter),
                   ["X-Correlation-ID"] = string.format("%08x-0000-4000-9000-%012x", math.random(0, 0xffffffff),
                                                        counter)}
  if token then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", "/fhir/$process-message", headers, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"server at {url} did not start")


def body_template() -> str:
    text = EXAMPLE.read_text()
    text = text.replace("9912003888", "__NHS__")
    return re.sub(r'"value": "SPR-2026-[^"]+"', '"value": "__REF__"', text)


def run_wrk(base: str, env: dict[str, str], seconds: int, connections: int, *, strict: bool = False) -> float:
    """Returns the answered-with-2xx requests per second; `strict` stops the bench on any other answer
    (a refusal is fast, so counting it would flatter the side that refuses)."""
    script = Path(env["BENCH_DIR"]) / "post.lua"
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), "--latency", base],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        if strict:
            raise SystemExit(f"{base} refused {errors.group(1)} requests: no fair measure")
        print(f"  warning: {errors.group(1)} non-2xx responses")
    if done is None:
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    took = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    return (int(done.group(1)) - int(errors.group(1) if errors else 0)) / took


def prepare_gateway(data: Path, url: str | None) -> dict[str, str]:
    """`spgw migrate` (schema and keys) and the demo directory, before any worker starts (so workers do
    not race); returns the environment the gateway's processes read their settings from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPGW_")}
    env.update(SPGW_DATA_DIR=str(data), AUTHLIB_INSECURE_TRANSPORT="1")
    if url:
        env["SPGW_DATABASE_URL"] = url
    subprocess.run([str(SPGW), "migrate"], env=env, check=True, capture_output=True)
    from gateway.db import make_engine
    from gateway.demo import seed_directory
    from gateway.settings import Settings

    settings = Settings(data_dir=data, database_url=url)
    engine = make_engine(settings)
    seed_directory(engine, settings)
    engine.dispose()
    return env


def fresh_database(server, name: str) -> str:  # type: ignore[no-untyped-def]
    """Returns the URL of a new empty database `name` on the throwaway PostgreSQL server."""
    from sqlalchemy import create_engine, text

    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.url(name)


@dataclass
class Side:
    """One server under test: an ASGI app under `uvicorn --workers N`, and its rounds' rates."""

    name: str
    app: str
    workers: int
    env: dict[str, str]
    ready_path: str
    token: bool = False
    rates: list[float] = field(default_factory=list)
    proc: subprocess.Popen | None = None  # type: ignore[type-arg]
    base: str = ""
    run_env: dict[str, str] = field(default_factory=dict)

    def start(self, bench_env: dict[str, str]) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "uvicorn", self.app, "--port", str(port), "--workers", str(self.workers)]
        cmd += ["--no-access-log", "--log-level", "warning"]
        env = dict(self.env, SPGW_PUBLIC_BASE_URL=self.base, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_for(self.base + self.ready_path)
        self.run_env = dict(bench_env)
        if self.token:
            self.run_env["BENCH_TOKEN"] = subprocess.run(
                [str(SPGW), "token", "demo-gp", "--url", self.base],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            ).stdout.strip()

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    @property
    def best(self) -> float:
        return max(self.rates)


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="seconds per round and side")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each side counts")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk): HTTP benchmark skipped")
        return 2
    work = Path(tempfile.mkdtemp(prefix="spgw-bench-http-"))
    (work / "post.lua").write_text(LUA)
    (work / "body.json").write_text(body_template())
    bench_env = dict(os.environ, BENCH_BODY=str(work / "body.json"), BENCH_DIR=str(work))
    sys.path.insert(0, str(ROOT))
    from bench.bare_app import create_table

    server = None
    sides: list[Side] = []
    try:
        if args.database == "postgresql":
            from tests.support.postgres import start_server

            server = start_server(fsync=True)  # durable, like the SQLite side: commits reach the disk
            if server is None:
                print("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: benchmark skipped")
                return 2
            bare_url = fresh_database(server, "bench_bare")
            gateway_urls = {w: fresh_database(server, f"bench_gw{w}") for w in {args.workers, 2, 1}}
        else:
            bare_url = f"sqlite:///{work / 'data' / 'durable-bare.db'}"  # the gateway's data folder: same disk
            gateway_urls = {args.workers: None}
        workers_pair = (1, 2) if args.database == "postgresql" else ()
        for w, url in sorted(gateway_urls.items()):
            env = prepare_gateway(work / f"data{w}" if url else work / "data", url)
            name = "gateway" if w == args.workers else f"gateway x{w}"
            sides.append(Side(name, "gateway.asgi:app", w, env, "/fhir/metadata", token=True))
        create_table(bare_url)
        sides.append(
            Side("durable", "bench.bare_app:durable", args.workers, dict(bench_env, BENCH_BARE_DB=bare_url), "/docs")
        )
        sides.append(Side("parse", "bench.bare_app:app", args.workers, dict(bench_env), "/docs"))
        for side in sides:
            side.start(bench_env)
            run_wrk(side.base, side.run_env, 2, args.connections, strict=True)  # warm-up, not counted
        print(f"load average before: {load_average()}")
        for r in range(args.rounds):
            for side in sides:
                side.rates.append(run_wrk(side.base, side.run_env, args.seconds, args.connections, strict=True))
            print(f"round {r + 1}: " + ", ".join(f"{s.name} {s.rates[-1]:.0f}/s" for s in sides))
        print(f"load average after: {load_average()}")
    finally:
        for side in sides:
            side.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    by_name = {s.name: s for s in sides}
    gateway, durable, parse = by_name["gateway"].best, by_name["durable"].best, by_name["parse"].best
    for side in sides:
        print(f"{side.name:>12}: {side.best:8.1f} referrals/s ({side.workers} worker{'s' if side.workers > 1 else ''})")
    ratio = gateway / durable
    figures = {
        "database": args.database,
        "gateway_rps": gateway,
        "durable_bare_rps": durable,
        "parse_only_rps": parse,
        "ratio_durable": round(ratio, 3),
        "ratio_parse_only": round(gateway / parse, 3),
        "workers": args.workers,
        "connections": args.connections,
        "rounds": args.rounds,
        "seconds": args.seconds,
    }
    met = ratio >= TARGET
    last = f"ratio gateway/durable bare: {ratio:.2f} (target >= {TARGET}, goal {GOAL})"
    if workers_pair:
        one = by_name["gateway" if args.workers == 1 else "gateway x1"].best
        two = by_name["gateway" if args.workers == 2 else "gateway x2"].best
        figures.update(one_worker_rps=one, two_workers_rps=two, ratio_workers=round(two / one, 3))
        met = met and two / one >= WORKERS_TARGET
        last += f"; 2 workers/1: {two / one:.2f} (target >= {WORKERS_TARGET})"
    print(json.dumps(figures))
    print(f"parse-only ratio (not a target): {gateway / parse:.2f}")
    print(last + (" OK" if met else " BELOW TARGET"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
