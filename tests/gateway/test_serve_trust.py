"""Issue 10 item 14, against a real `spgw demo`/`spgw serve` process: the token audience and issuer never
follow the request's Host header; X-Forwarded-For from a proxy that is not in SPGW_TRUSTED_PROXIES does
not replace the audited source address; `spgw serve` refuses a non-loopback bind without
SPGW_PUBLIC_BASE_URL."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from pathlib import Path

import httpx

from gateway.auth.client_side import CLIENT_ASSERTION_TYPE, make_client_assertion
from tests.gateway.test_cli_demo import SPGW, clean_env, demo, demo_token, running_demo  # noqa: F401 (fixture)


def _assertion(demo_dir: Path, token_url: str) -> dict[str, str]:
    jwk = json.loads((demo_dir / "demo-keys" / "demo-gp.jwk.json").read_text())
    assertion = make_client_assertion(client_id="demo-gp", private_jwk=jwk, token_url=token_url)
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
    }


def test_the_host_header_does_not_choose_the_token_audience(demo) -> None:  # noqa: F811
    forged = httpx.post(
        f"{demo.base_url}/oauth2/token",
        data=_assertion(demo.data_dir, "http://evil.example/oauth2/token"),
        headers={"Host": "evil.example"},
    )
    assert forged.status_code == 401

    real = httpx.post(
        f"{demo.base_url}/oauth2/token",
        data=_assertion(demo.data_dir, f"{demo.base_url}/oauth2/token"),
        headers={"Host": "evil.example"},
    )
    assert real.status_code == 200, real.text


def test_x_forwarded_for_from_an_untrusted_peer_is_not_the_audited_address(demo) -> None:  # noqa: F811
    token = demo_token(demo, "demo-gp")
    request_id = str(uuid.uuid4())
    response = httpx.get(
        f"{demo.base_url}/fhir/ServiceRequest",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": request_id, "X-Forwarded-For": "203.0.113.9"},
    )
    assert response.status_code == 200

    with sqlite3.connect(f"file:{demo.data_dir / 'spgw.db'}?mode=ro", uri=True) as con:
        rows = [c for (c,) in con.execute("select content from audit_entry where content like ?", (f"%{request_id}%",))]
    assert rows
    addresses = [a["network"]["address"] for r in rows for a in json.loads(r)["agent"] if "network" in a]
    assert addresses and set(addresses) == {"127.0.0.1"}


def test_serve_refuses_a_public_bind_without_a_public_base_url(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = subprocess.run(
        [str(SPGW), "serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(data)],  # noqa: S104
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
        check=False,
    )
    assert result.returncode != 0
    assert "SPGW_PUBLIC_BASE_URL" in result.stderr + result.stdout
