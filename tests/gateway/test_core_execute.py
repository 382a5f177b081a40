"""gateway.storage.repository.execute (and audit.store's twin) run Core statements on the session's
connection, skipping the ORM's per-statement machinery, but must behave as `session.execute`: same
transaction, pending ORM objects flushed first, and gone again on rollback."""

from __future__ import annotations

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from audit import store as audit_store
from gateway.db import transaction
from gateway.models import Organisation
from gateway.schema import init_db
from gateway.storage.repository import execute

_ORG = Organisation.__table__  # type: ignore[attr-defined]


def _org(org_id: str) -> Organisation:
    return Organisation(id=org_id, name="Test host", kind="vcse", identifier_system="https://example.org/id")


def test_pending_orm_objects_are_flushed_before_a_core_statement(engine: Engine) -> None:
    init_db(engine)
    for run in (execute, audit_store._execute):
        org_id = f"T{run.__name__}"[:20]
        with transaction(engine) as session:
            session.add(_org(org_id))
            found = run(session, select(_ORG.c.name).where(_ORG.c.id == org_id)).scalar_one_or_none()
            assert found == "Test host"


def test_no_autoflush_is_respected_and_a_rollback_takes_the_rows_away(engine: Engine) -> None:
    init_db(engine)
    with Session(engine) as session:
        with session.no_autoflush:
            session.add(_org("TNOFLUSH"))
            assert execute(session, select(_ORG.c.id).where(_ORG.c.id == "TNOFLUSH")).first() is None
        before = execute(session, select(func.count()).select_from(_ORG)).scalar_one()
        assert execute(session, select(_ORG.c.id).where(_ORG.c.id == "TNOFLUSH")).first() is not None
        session.rollback()
    with Session(engine) as session:
        assert execute(session, select(func.count()).select_from(_ORG)).scalar_one() == before - 1
