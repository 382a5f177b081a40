"""The HTTP baselines for bench/http_throughput.py, both bare FastAPI endpoints (no auth, no audit):

- `app`: parse-only, it validates the referral Bundle with fhir.resources and answers;
- `durable`: the same validation, then the raw body inserted as one row and committed, in the same
  database as the gateway (SQLite in WAL mode with the pragmas gateway/db.py sets, or PostgreSQL),
  named by BENCH_BARE_DB (a SQLAlchemy-style URL). The `message` table is made by the bench before
  any worker starts, so that workers do not race to create it.

Each worker process opens one connection; the endpoint is `async def` and runs its statements
inline, so a worker serves one insert at a time, as a single SQLite writer must.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fhir.resources.R4B.bundle import Bundle

app = FastAPI()


@app.post("/fhir/$process-message")
async def parse_only(request: Request) -> Response:
    Bundle.model_validate_json(await request.body())
    return Response(b"{}", media_type="application/fhir+json")


def libpq_url(url: str) -> str:
    """Returns a SQLAlchemy `postgresql+psycopg://` URL as the libpq URI psycopg connects with."""
    return "postgresql://" + url.split("://", 1)[1]


def connect(url: str) -> Any:
    """Returns a DB-API connection to `url`, configured as the gateway configures its own."""
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None, check_same_thread=False, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")  # as gateway/db.py: durable across a process crash
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA busy_timeout=30000")
        return con
    import psycopg

    return psycopg.connect(libpq_url(url), autocommit=True, options="-c timezone=UTC")


def create_table(url: str) -> None:
    """Creates the durable endpoint's one table (run once by the bench, before the workers start)."""
    con = connect(url)
    key = "INTEGER PRIMARY KEY" if url.startswith("sqlite") else "BIGSERIAL PRIMARY KEY"
    body = "BLOB" if url.startswith("sqlite") else "BYTEA"
    con.execute(f"CREATE TABLE IF NOT EXISTS message (id {key}, body {body} NOT NULL)")
    con.close()


def _durable_app() -> FastAPI:
    url = os.environ.get("BENCH_BARE_DB")
    api = FastAPI()
    if not url:
        return api  # imported without a database (e.g. by the parse-only server): nothing to serve
    con = connect(url)
    sqlite = url.startswith("sqlite")
    begin = "BEGIN IMMEDIATE" if sqlite else "BEGIN"
    insert = "INSERT INTO message (body) VALUES (?)" if sqlite else "INSERT INTO message (body) VALUES (%s)"

    @api.post("/fhir/$process-message")
    async def validate_insert_commit(request: Request) -> Response:
        raw = await request.body()
        Bundle.model_validate_json(raw)
        con.execute(begin)
        con.execute(insert, (raw,))
        con.execute("COMMIT")
        return Response(b"{}", media_type="application/fhir+json")

    return api


durable = _durable_app()
