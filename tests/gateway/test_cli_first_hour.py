"""The first hour with the command line: `spgw token` against a gateway that is not there, and a second
`spgw demo` on a port already in use, each fail in one line, before doing anything, without a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main
from gateway.db import make_engine
from gateway.demo import seed_directory
from gateway.schema import init_db
from gateway.settings import Settings

SPGW = Path(sys.executable).parent / "spgw"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_spgw_token_against_a_server_that_is_down_says_so_in_one_line(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    engine = make_engine(settings)
    init_db(engine)
    seed_directory(engine, settings)  # the demo key exists: only the server is missing
    url = f"http://127.0.0.1:{_closed_port()}"

    result = CliRunner().invoke(main, ["token", "demo-gp", "--url", url, "--data-dir", str(tmp_path)])

    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert url in lines[0] and "cannot reach" in lines[0]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_second_demo_on_a_taken_port_stops_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        run = subprocess.run(
            [str(SPGW), "demo", "--port", str(port), "--mllp-port", str(_closed_port()), "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert f"port {port} on 127.0.0.1 is already in use" in output
    for started_something in ("sp-gateway demo at", "Delivery worker", "MLLP listener", "Traceback"):
        assert started_something not in output
    assert not (tmp_path / "spgw.db").exists()  # nothing was seeded either
    assert time.monotonic() - started < 30
