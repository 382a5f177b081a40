"""Fixtures shared by the suite: a gateway app on SQLite or on a throwaway PostgreSQL, demo data,
and access tokens for the demo clients."""

from __future__ import annotations

import shutil
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


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder migrated once per session (schema, audit head, gateway keys), copied by each test:
    running Alembic for every test was most of the suite's time."""
    from gateway.auth.keys import ensure_keys
    from gateway.db import make_engine
    from gateway.schema import migrate
    from gateway.settings import Settings

    folder = tmp_path_factory.mktemp("template") / "data"
    settings = Settings(data_dir=folder)
    eng = make_engine(settings)
    migrate(eng)
    eng.dispose()  # the last connection closing checkpoints the WAL into the file: one file to copy
    ensure_keys(settings.keys_dir)
    return folder


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    """A database migrated once per session; each test gets `CREATE DATABASE ... TEMPLATE` of it."""
    from gateway.db import make_engine
    from gateway.schema import migrate
    from gateway.settings import Settings

    name = "spgw_template_" + uuid.uuid4().hex[:8]
    _admin(server=postgres_server, statement=f'CREATE DATABASE "{name}"')
    eng = make_engine(Settings(database_url=postgres_server.url(name)))
    migrate(eng)
    eng.dispose()  # a template must have no connections while it is copied
    return name


def copy_template(template: Path, data_dir: Path, *, database: bool = True) -> None:
    """Copies the template's keys (and, for SQLite, its database file) into a test's data folder."""
    shutil.copytree(template, data_dir, ignore=None if database else shutil.ignore_patterns("*.db*"))


@pytest.fixture
def settings(tmp_path: Path, backend: str, request: pytest.FixtureRequest):
    """Settings for one test: a migrated SQLite file with the gateway's keys, or a migrated database on the
    throwaway server (dropped after), both copied from a per-session template."""
    from gateway.settings import Settings

    data_dir = tmp_path / "data"
    if backend != "postgres":
        copy_template(request.getfixturevalue("sqlite_template"), data_dir)
        yield Settings(data_dir=data_dir)
        return
    server = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("postgres_template")
    copy_template(request.getfixturevalue("sqlite_template"), data_dir, database=False)
    name = "t_" + uuid.uuid4().hex[:12]
    _admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield Settings(data_dir=data_dir, database_url=server.url(name))
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
