"""Fixtures shared by the suite: a gateway app on SQLite or on a throwaway PostgreSQL, demo data,
and access tokens for the demo clients."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from tests.support.postgres import PostgresServer, start_server

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_server()
    if server is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: PostgreSQL tests skipped")
    yield server
    server.stop()


def _admin(server: PostgresServer, statement: str) -> None:
    admin = create_engine(server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(statement))
    admin.dispose()


@pytest.fixture(autouse=True)
def _loopback_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Like the demo, the suite's receivers (CRM and GP simulators) listen on loopback over http://, so
    insecure endpoints are allowed; the SSRF tests build settings without it."""
    monkeypatch.setenv("SPGW_ALLOW_INSECURE_ENDPOINTS", "true")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest):
    """Settings for one test: a fresh SQLite file, or a fresh database on the throwaway server (dropped after)."""
    from gateway.settings import Settings

    if backend != "postgres":
        yield Settings(data_dir=tmp_path / "data")
        return
    server = request.getfixturevalue("postgres_server")
    name = "t_" + uuid.uuid4().hex[:12]
    _admin(server, f'CREATE DATABASE "{name}"')
    yield Settings(data_dir=tmp_path / "data", database_url=server.url(name))
    _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(settings) -> Iterator[Engine]:
    from gateway.db import make_engine

    eng = make_engine(settings)
    yield eng
    eng.dispose()


@pytest.fixture
def app(settings, engine, monkeypatch: pytest.MonkeyPatch):
    from gateway.app import create_app
    from gateway.demo import seed_directory

    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    application = create_app(settings, engine)
    seed_directory(engine, settings)
    return application


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def token_for(app):
    """Returns a function giving Authorization headers for a demo client (token minted by the gateway's key)."""
    from gateway.auth.principal import Principal, Role
    from gateway.demo import DEMO_CLIENTS

    def headers(client_id: str, **extra: str) -> dict[str, str]:
        demo = next(c for c in DEMO_CLIENTS if c.client_id == client_id)
        from gateway.auth.principal import ROLE_SCOPES
        from gateway.auth.tokens import issue_access_token

        principal = Principal(demo.client_id, demo.organisation, Role(demo.role), frozenset(ROLE_SCOPES[demo.role]))
        token = issue_access_token(app.state.spgw.token_keys, principal, issuer="http://testserver", ttl=300)
        return {
            "Authorization": f"Bearer {token}",
            "X-Request-ID": str(uuid.uuid4()),
            "X-Correlation-ID": str(uuid.uuid4()),
            **extra,
        }

    return headers


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """Says how many tests ran against PostgreSQL, so a CI log shows that they really did."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in counts:
        for report in terminalreporter.stats.get(outcome, []):
            on_postgres = "postgres" in getattr(report, "keywords", {})
            # a pass is counted at its call phase; a failure or skip wherever it happened
            if on_postgres and (report.when == "call" or (outcome != "passed" and report.when == "setup")):
                counts[outcome] += 1
    terminalreporter.write_line(
        f"PostgreSQL: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    )
