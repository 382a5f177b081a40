"""A throwaway PostgreSQL server for the test suite, started from the server binaries when present.

initdb and postgres refuse to run as root, and CI runs as root: the server then runs as an
unprivileged user (`postgres` if the system has it, else one created for the purpose), owns
its temporary data folder, and listens on a Unix socket in a temp folder only (no TCP).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SERVICE_USER = "spgw-test-pg"


def find_bin_dir() -> Path | None:
    """Returns the folder holding initdb and pg_ctl, or None when PostgreSQL's server is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def _run_as(user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--"] if user else []


def _service_user() -> str | None:
    """Returns the user to run the server as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", SERVICE_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        check=True,
        capture_output=True,
    )
    return SERVICE_USER


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    user: str | None
    port: int = 54329
    fsync: bool = False  # the suite needs no durability; a benchmark against a durable baseline does

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def superuser(self) -> str:
        return self.user or pwd.getpwuid(os.geteuid()).pw_name

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.superuser}@/{database}?host={self.socket_dir}&port={self.port}"

    def start(self) -> None:
        data = self.root / "data"
        self.socket_dir.mkdir(parents=True)
        if self.user:
            shutil.chown(self.root, self.user)
            shutil.chown(self.socket_dir, self.user)
        prefix = _run_as(self.user)
        subprocess.run(
            [
                *prefix,
                str(self.bin_dir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                self.superuser,
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        fsync = "on" if self.fsync else "off"
        options = f"-k {self.socket_dir} -p {self.port} -c listen_addresses='' -c fsync={fsync} -c max_connections=100"
        subprocess.run(
            [
                *prefix,
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            [
                *_run_as(self.user),
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.root / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_server(*, fsync: bool = False) -> PostgresServer | None:
    """Returns a running throwaway server, or None when the binaries are absent; `fsync` makes commits durable."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        return None
    user = _service_user()
    root = Path(tempfile.mkdtemp(prefix="spgw-pg-"))
    server = PostgresServer(bin_dir, root, user, port=54329 + os.getpid() % 500, fsync=fsync)
    server.start()
    deadline = time.monotonic() + 20
    while not (server.socket_dir / f".s.PGSQL.{server.port}").exists():
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError("PostgreSQL did not open its socket in 20 s")
        time.sleep(0.1)
    return server
