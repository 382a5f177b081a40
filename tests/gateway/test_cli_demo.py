"""The README walk-through, for real: `spgw demo` as a subprocess on a free loopback port, `spgw token`
for the access tokens, and the README's steps over HTTP; then the client commands an operator uses
(`spgw clients list/add/rotate-key`, `spgw keys rotate`) against the same data folder.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gateway.auth.principal import ROLE_SCOPES, Principal, Role

REPO = Path(__file__).resolve().parents[2]
SPGW = Path(sys.executable).parent / "spgw"
FIXTURE = REPO / "tests" / "fixtures" / "fhir" / "sp-referral-message.json"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
FIXTURE_NHS = "9912003888"  # the patient in sp-referral-message.json (README step 3)
SEEDED_NHS = "9990001006"  # the demo's sample referral from demo-gp to 8VC01 (gateway/demo.py)
START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict[str, str]:
    """The environment a newcomer has: no SPGW_* settings and no AUTHLIB_INSECURE_TRANSPORT (the demo
    sets that itself, on loopback only)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SPGW_") and k != "AUTHLIB_INSECURE_TRANSPORT"}


def spgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SPGW), *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=clean_env(), check=False
    )


@dataclass
class Demo:
    base_url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@contextmanager
def running_demo(data_dir: Path, log_path: Path) -> Iterator[Demo]:
    """Runs `spgw demo` on a free loopback port until /fhir/metadata answers (bounded wait), yields it,
    then stops it (SIGTERM, then SIGKILL after 10 s). stdout and stderr both go to `log_path`."""
    if not SPGW.exists():
        pytest.skip(f"the spgw console script is not installed next to {sys.executable}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(SPGW), "demo", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(),
            cwd=REPO,
        )
    demo = Demo(base, data_dir, process, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"spgw demo exited with {process.returncode}:\n{demo.output()}")
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                if httpx.get(f"{base}/fhir/metadata", timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"spgw demo did not answer /fhir/metadata within {START_TIMEOUT} s:\n{demo.output()}")
            time.sleep(0.2)
        yield demo
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def demo_token(demo: Demo, client_id: str, *extra: str) -> str:
    result = spgw("token", client_id, "--url", demo.base_url, "--data-dir", str(demo.data_dir), *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def headers(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("demo")
    with running_demo(root / "data", root / "demo.log") as running:
        yield running


# -- the README's steps ----------------------------------------------------------------------------


def test_spgw_token_prints_an_es384_access_token(demo: Demo) -> None:
    token = demo_token(demo, "demo-gp")

    assert token.count(".") == 2
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert (header["alg"], header["typ"]) == ("ES384", "at+jwt")
    kids = [k["kid"] for k in httpx.get(f"{demo.base_url}/oauth2/jwks", timeout=10).json()["keys"]]
    assert header["kid"] in kids


def test_the_readme_walk_through_from_referral_to_accepted_task(demo: Demo) -> None:
    gp = demo_token(demo, "demo-gp")
    with httpx.Client(base_url=demo.base_url, timeout=10.0) as http:
        # 2. the referral message, with the BaRS ids
        trace = {"X-Request-ID": str(uuid.uuid4()), "X-Correlation-ID": str(uuid.uuid4())}
        sent = http.post(
            "/fhir/$process-message",
            content=FIXTURE.read_bytes(),
            headers=headers(gp, **trace, **{"Content-Type": "application/fhir+json"}),
        )
        assert sent.status_code == 200, sent.text
        stored = {e["resource"]["resourceType"]: e["resource"]["id"] for e in sent.json()["entry"]}
        # 3. found again by NHS number
        found = http.get(
            "/fhir/ServiceRequest", params={"patient:identifier": f"{NHS}|{FIXTURE_NHS}"}, headers=headers(gp)
        )
        assert [e["resource"]["id"] for e in found.json()["entry"]] == [stored["ServiceRequest"]]
        # 4. the VCSE host lists its packets and accepts one (the demo's sample referral to 8VC01)
        vcse = demo_token(demo, "demo-vcse")
        packets = http.get("/vcse/v1/referrals", headers=headers(vcse)).json()["referrals"]
        assert packets, "the demo seeds a referral for demo-vcse"
        assert all(p["recipient"] == "8VC01" for p in packets)
        assert all(SEEDED_NHS not in json.dumps(p) for p in packets)  # minimal packet: no NHS number
        packet = next(p for p in packets if p["status"] == "new")
        accepted = http.post(
            f"/vcse/v1/referrals/{packet['referral_id']}/status",
            json={"status": "accepted"},
            headers=headers(vcse),
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["task_status"] == "accepted"
        # 5. the GP sees the Task move
        seeded = http.get(
            "/fhir/ServiceRequest", params={"patient:identifier": f"{NHS}|{SEEDED_NHS}"}, headers=headers(gp)
        ).json()["entry"]
        sr_id = seeded[0]["resource"]["id"]
        tasks = http.get("/fhir/Task", params={"focus": f"ServiceRequest/{sr_id}"}, headers=headers(gp)).json()
        assert [e["resource"]["status"] for e in tasks["entry"]] == ["accepted"]


# -- the client commands ------------------------------------------------------------------------------


def test_spgw_clients_list_json_shows_every_demo_role_with_its_organisation_and_scopes(demo: Demo) -> None:
    result = spgw("clients", "list", "--json", "--data-dir", str(demo.data_dir))

    assert result.returncode == 0, result.stderr
    rows = {row["client_id"]: row for row in json.loads(result.stdout)}
    demo_rows = {cid: row for cid, row in rows.items() if cid.startswith("demo-")}
    roles = sorted(row["role"] for row in demo_rows.values())
    assert roles == ["admin", "ig-officer", "referrer", "referrer", "vcse", "vcse"]
    assert demo_rows["demo-gp"]["organisation"] == "A81001"
    assert demo_rows["demo-gp-b"]["organisation"] == "B82002"
    assert (demo_rows["demo-vcse"]["organisation"], demo_rows["demo-vcse-b"]["organisation"]) == ("8VC01", "8VC02")
    for row in demo_rows.values():
        assert set(row) >= {"client_id", "organisation", "role", "scopes"}
        assert sorted(row["scopes"]) == sorted(ROLE_SCOPES[Role(row["role"])])


def test_spgw_clients_add_generate_key_writes_an_owner_only_key_that_gets_a_token(demo: Demo, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "surgery-c.jwk.json"

    added = spgw(
        "clients",
        "add",
        "surgery-c",
        "--organisation",
        "A81001",
        "--role",
        "referrer",
        "--scope",
        "system/ServiceRequest.rs",
        "--generate-key",
        str(key_file),
        "--data-dir",
        str(demo.data_dir),
    )

    assert added.returncode == 0, added.stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert '"d":' in key_file.read_text()
    token = demo_token(demo, "surgery-c", "--key", str(key_file))
    answer = httpx.get(f"{demo.base_url}/fhir/ServiceRequest", headers=headers(token), timeout=10)
    assert answer.status_code == 200
    patients = httpx.get(f"{demo.base_url}/fhir/Patient", headers=headers(token), timeout=10)
    assert patients.status_code == 403  # only the scope it was registered with


def test_spgw_clients_add_refuses_a_scope_above_the_role(demo: Demo, tmp_path: Path) -> None:
    result = spgw(
        "clients",
        "add",
        "greedy-host",
        "--organisation",
        "8VC01",
        "--role",
        "vcse",
        "--scope",
        "system/ServiceRequest.r",
        "--generate-key",
        str(tmp_path / "greedy.jwk.json"),
        "--data-dir",
        str(demo.data_dir),
    )

    assert result.returncode != 0
    assert "ceiling" in result.stderr
    assert not (tmp_path / "greedy.jwk.json").exists()


def test_spgw_clients_rotate_key_keeps_the_old_key_valid_until_retired(demo: Demo, tmp_path: Path) -> None:
    old_key = demo.data_dir / "demo-keys" / "demo-gp-b.jwk.json"
    new_key = tmp_path / "demo-gp-b.new.jwk.json"

    rotated = spgw("clients", "rotate-key", "demo-gp-b", "--out", str(new_key), "--data-dir", str(demo.data_dir))

    assert rotated.returncode == 0, rotated.stderr
    assert new_key.stat().st_mode & 0o777 == 0o600
    assert demo_token(demo, "demo-gp-b", "--key", str(old_key))
    assert demo_token(demo, "demo-gp-b", "--key", str(new_key))
    listed = {
        r["client_id"]: r
        for r in json.loads(spgw("clients", "list", "--json", "--data-dir", str(demo.data_dir)).stdout)
    }
    assert len(listed["demo-gp-b"]["kids"]) == 2

    newest = tmp_path / "demo-gp-b.newest.jwk.json"
    retired = spgw(
        "clients", "rotate-key", "demo-gp-b", "--out", str(newest), "--retire-old", "--data-dir", str(demo.data_dir)
    )
    assert retired.returncode == 0, retired.stderr
    refused = spgw(
        "token", "demo-gp-b", "--url", demo.base_url, "--key", str(old_key), "--data-dir", str(demo.data_dir)
    )
    assert refused.returncode != 0
    assert "invalid_client" in refused.stderr
    assert demo_token(demo, "demo-gp-b", "--key", str(newest))


# -- the gateway's own key ---------------------------------------------------------------------------


def test_spgw_keys_rotate_adds_a_signing_key_and_keeps_the_previous_one_verifying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.auth.keys import TokenKeys
    from gateway.auth.tokens import issue_access_token, verify_access_token
    from gateway.cli import main

    monkeypatch.delenv("SPGW_DATABASE_URL", raising=False)
    monkeypatch.setenv("SPGW_DATA_DIR", str(tmp_path))  # restored after: load_settings writes it
    keys_dir = tmp_path / "data" / "keys"
    before = TokenKeys(keys_dir)
    principal = Principal("demo-gp", "A81001", Role.REFERRER, frozenset(ROLE_SCOPES[Role.REFERRER]))
    old_token = issue_access_token(before, principal, issuer="http://gw", ttl=300)

    result = CliRunner().invoke(main, ["keys", "rotate", "--data-dir", str(tmp_path / "data")])

    assert result.exit_code == 0, result.output
    after = TokenKeys(keys_dir)  # what a restarted gateway loads
    assert [k.kid for k in after.keyset.keys] == [after.current.kid, before.current.kid]
    assert after.current.kid in result.output
    assert verify_access_token(after, old_token, issuer="http://gw").client_id == "demo-gp"
    new_token = issue_access_token(after, principal, issuer="http://gw", ttl=300)
    assert json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "=="))["kid"] == after.current.kid
    assert (keys_dir / "token-signing.jwks.json").stat().st_mode & 0o777 == 0o600


# -- the README, as written -------------------------------------------------------------------------


def readme_walk_through() -> str:
    """Returns the README's "A referral, step by step" shell block."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## A referral, step by step", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_readme_walk_through_runs_as_written_twice(tmp_path: Path) -> None:
    import shutil

    script = readme_walk_through()
    assert "<" not in script.replace("<<", ""), "the README asks the reader to fill in a <placeholder>"
    for tool in ("bash", "curl", "jq"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    with running_demo(tmp_path / "data", tmp_path / "demo.log") as demo:
        env = {**clean_env(), "BASE": demo.base_url, "DATA": str(demo.data_dir), "SPGW": str(SPGW)}
        runs = [
            subprocess.run(
                ["bash", "-c", script], capture_output=True, text=True, timeout=120, env=env, cwd=REPO, check=False
            )
            for _ in range(2)
        ]
    first, second = runs
    assert first.returncode == 0, first.stderr
    assert '"type": "message"' in first.stdout and '"code": "ok"' in first.stdout  # step 2: BaRS response
    assert '"code": "REC_CONFLICT"' in second.stdout  # step 2 again: the 409 the README explains
    for run in runs:
        assert "null" not in run.stdout.split("ServiceRequest/", 1)[1].split("\n", 1)[0]
        assert re.search(r"^Task/\S+ accepted$", run.stdout, re.MULTILINE), run.stdout + run.stderr
        assert "audit log intact" in run.stdout, run.stdout[-500:]
