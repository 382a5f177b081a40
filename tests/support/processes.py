"""Real gateway processes for the end-to-end and fault tests: `spgw serve` / `spgw worker` as subprocesses
in their own process group on a free loopback port, with bounded waits, stopped as a group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

SPGW = Path(sys.executable).parent / "spgw"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spgw_env(settings: Any, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPGW_", "PROMETHEUS_"))}
    # The suite's receivers (CRM and GP simulators) listen on loopback, as in the demo.
    env.update(
        SPGW_DATA_DIR=str(settings.data_dir),
        AUTHLIB_INSECURE_TRANSPORT="1",
        SPGW_ALLOW_INSECURE_ENDPOINTS="true",
        **extra,
    )
    if settings.database_url:
        env["SPGW_DATABASE_URL"] = settings.database_url
    return env


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    log: Path
    base_url: str = ""

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill_one_child(self) -> int:
        """SIGKILLs one of the group's other processes (a uvicorn worker); returns its pid."""
        for pid in group(self.proc.pid):
            if pid != self.proc.pid:
                os.kill(pid, signal.SIGKILL)
                return pid
        raise AssertionError("no child process to kill")

    def stop(self) -> None:
        with suppress(ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while (self.proc.poll() is None or group(self.proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        with suppress(ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with suppress(ProcessLookupError, subprocess.TimeoutExpired):
            self.proc.wait(5)


def group(pgid: int) -> list[int]:
    """Live processes of a process group."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


@contextmanager
def spgw_process(args: list[str], settings: Any, log: Path, **env: str) -> Iterator[Process]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(SPGW), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=spgw_env(settings, **env),
            start_new_session=True,
        )
    process = Process(proc, log)
    try:
        yield process
    finally:
        process.stop()


@contextmanager
def serving(settings: Any, log: Path, *args: str, **env: str) -> Iterator[Process]:
    """`spgw serve <args>` on a free port, yielded once /readyz answers 200 (60 s at most)."""
    port = free_port()
    with spgw_process(["serve", "--host", "127.0.0.1", "--port", str(port), *args], settings, log, **env) as process:
        process.base_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(process, "/readyz"), 60, "spgw serve to be ready", process)
        yield process


def _answers(process: Process, path: str) -> bool:
    if process.proc.poll() is not None:
        raise AssertionError(f"the process exited with {process.proc.returncode}:\n{process.output()[-2000:]}")
    try:
        return httpx.get(process.base_url + path, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(condition: Any, seconds: float, what: str, process: Process | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            tail = process.output()[-2000:] if process else ""
            raise AssertionError(f"timed out after {seconds} s waiting for {what}\n{tail}")
        time.sleep(0.1)
