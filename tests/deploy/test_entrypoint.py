"""The container image's entrypoint, run as the image runs it (no container engine can run here, so the
script is exercised directly): migrate, then serve; serve refuses a database that was never migrated;
the Dockerfile and the compose file use it the way the guide says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.processes import Process, free_port, spgw_env, wait_until

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "deploy" / "entrypoint.sh"

pytestmark = pytest.mark.e2e


def entrypoint_env(data_dir: Path, **extra: str) -> dict[str, str]:
    from gateway.settings import Settings

    env = spgw_env(Settings(data_dir=data_dir), SPGW_HOST="127.0.0.1", **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # spgw as the image has it
    return env


def test_the_entrypoint_migrates_then_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    env = entrypoint_env(data, SPGW_PORT=str(port), SPGW_WORKERS="2")
    migrated = subprocess.run([str(ENTRYPOINT), "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    assert (data / "keys" / "token-signing.jwks.json").exists()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(ENTRYPOINT), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    process = Process(proc, log, f"http://127.0.0.1:{port}")
    try:

        def ready() -> bool:
            assert proc.poll() is None, process.output()
            try:
                return httpx.get(f"{process.base_url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, "the entrypoint's gateway to be ready", process)
        proc.terminate()  # what `podman stop` sends: exec means spgw gets it, not a shell
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_entrypoint_serve_refuses_a_database_that_was_never_migrated(tmp_path: Path) -> None:
    env = entrypoint_env(tmp_path / "data", SPGW_PORT=str(free_port()))
    done = subprocess.run([str(ENTRYPOINT), "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "spgw migrate" in done.stdout + done.stderr


def test_the_image_and_the_compose_file_run_the_entrypoint_for_each_role() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY deploy/entrypoint.sh /usr/local/bin/spgw-entrypoint" in dockerfile
    assert 'ENTRYPOINT ["/usr/local/bin/spgw-entrypoint"]' in dockerfile
    assert "USER spgw" in dockerfile
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "migrate", "gateway", "worker"} <= services.keys()
    assert services["migrate"]["command"] == ["migrate"]
    for role in ("gateway", "worker"):
        assert services[role]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["gateway"]["command"] == ["serve"] and services["worker"]["command"] == ["worker"]
