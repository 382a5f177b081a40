"""HTTP benchmark: referrals per second through the real gateway against a bare FastAPI endpoint
that only parses the same bundle, same server (uvicorn, httptools + uvloop), same worker count,
same load generator (wrk), same run.

docs/design.md target: the gateway serves at least 70% of the bare endpoint's throughput.

Each request carries a distinct referral (its own valid NHS number, identifier and X-Request-ID,
made by the wrk Lua script), so the gateway stores every one; the bare endpoint gets the same bytes.

    .venv/bin/python bench/http_throughput.py                  # 10 s per side, 8 connections, 1 worker each
    .venv/bin/python bench/http_throughput.py --seconds 20 --connections 16

Needs `wrk` (Debian package `wrk`); says so and exits 2 when it is absent.
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
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "referral-message.json"

# wrk script: each request gets a fresh NHS number (Modulus 11 valid), referral identifier and request id.
LUA = r"""
counter = 0
template = nil
token = os.getenv("BENCH_TOKEN")
function init(args)
  local f = io.open(os.getenv("BENCH_BODY"), "r"); template = f:read("*a"); f:close()
  counter = math.random(1, 100000000)
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
                   ["X-Correlation-ID"] = "b3c4e5f6-0000-4000-8000-000000000000"}
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


def run_wrk(base: str, env: dict[str, str], seconds: int, connections: int) -> float:
    script = Path(env["BENCH_DIR"]) / "post.lua"
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), "--latency", base],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"  warning: {errors.group(1)} non-2xx responses")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def seed_demo_directory(data: Path) -> None:
    """Registers the demo organisations and clients before any worker starts (so workers do not race)."""
    from gateway.auth.keys import ensure_keys
    from gateway.db import make_engine
    from gateway.demo import seed_directory
    from gateway.schema import init_db
    from gateway.settings import Settings

    settings = Settings(data_dir=data)
    engine = make_engine(settings)
    init_db(engine)
    ensure_keys(settings.keys_dir)  # what `spgw migrate` does: the workers only load the keys
    seed_directory(engine, settings)
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk): HTTP benchmark skipped")
        return 2
    work = Path(tempfile.mkdtemp(prefix="spgw-bench-http-"))
    (work / "post.lua").write_text(LUA)
    (work / "body.json").write_text(body_template())
    env = dict(os.environ, BENCH_BODY=str(work / "body.json"), BENCH_DIR=str(work))
    python = sys.executable
    results = {}
    for name in ("bare", "gateway"):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        if name == "bare":
            cmd = [
                python,
                "-m",
                "uvicorn",
                "bench.bare_app:app",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ]
            server_env = dict(env, PYTHONPATH=str(ROOT))
        else:
            data = work / "data"
            seed_demo_directory(data)
            cmd = [
                python,
                "-m",
                "uvicorn",
                "gateway.asgi:app",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ]
            server_env = dict(env, SPGW_DATA_DIR=str(data), SPGW_PUBLIC_BASE_URL=base)
        server = subprocess.Popen(cmd, env=server_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(base + ("/docs" if name == "bare" else "/fhir/metadata"))
            run_env = dict(env)
            if name == "gateway":
                token = subprocess.run(
                    [str(Path(python).parent / "spgw"), "token", "demo-gp", "--url", base, "--data-dir", str(data)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=dict(env, AUTHLIB_INSECURE_TRANSPORT="1"),
                ).stdout.strip()
                run_env["BENCH_TOKEN"] = token
            run_wrk(base, run_env, 2, args.connections)  # warm-up
            results[name] = run_wrk(base, run_env, args.seconds, args.connections)
        finally:
            server.terminate()
            server.wait(20)
        print(f"{name:>8}: {results[name]:8.1f} referrals/s")
    ratio = results["gateway"] / results["bare"]
    print(
        json.dumps(
            {
                "bare_rps": results["bare"],
                "gateway_rps": results["gateway"],
                "ratio": round(ratio, 3),
                "target": 0.7,
                "workers": args.workers,
                "connections": args.connections,
            }
        )
    )
    return 0 if ratio >= 0.7 else 1


if __name__ == "__main__":
    sys.exit(main())
