"""The request context every handler receives: the caller, its trace ids, storage and the audit log.

Handlers do their work inside `ctx.transaction()`; the AuditEvents they record there commit or
roll back with the action itself (no event, no action). Failures are audited by the error
handler in a transaction of their own, since the failed action left nothing behind.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlmodel import Session

from audit import store as audit_store
from audit.events import AuditContext
from gateway.auth.principal import Principal
from gateway.db import transaction
from gateway.settings import Settings
from gateway.storage.repository import Repository

# BaRS routing and identity headers (base64 JSON); recorded in the audit where present.
NHSD_HEADERS = (
    "nhsd-target-identifier",
    "nhsd-end-user-organisation",
    "nhsd-requesting-software",
    "nhsd-requesting-practitioner",
)


def decode_routing_headers(headers: Any) -> dict[str, str]:
    """Returns the NHSD-* headers present, decoded from base64 JSON where they are, else as sent (truncated)."""
    out: dict[str, str] = {}
    for name in NHSD_HEADERS:
        raw = headers.get(name)
        if not raw:
            continue
        try:
            decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=False)
            out[name] = orjson.dumps(orjson.loads(decoded)).decode()[:500]
        except (binascii.Error, orjson.JSONDecodeError, ValueError):
            out[name] = raw[:200]
    return out


@dataclass
class RequestContext:
    engine: Engine
    settings: Settings
    principal: Principal | None
    request_id: str | None
    correlation_id: str | None
    base_url: str
    source_ip: str | None = None
    routing: dict[str, str] = field(default_factory=dict)
    session: Session | None = None

    @property
    def audit_context(self) -> AuditContext:
        p = self.principal
        return AuditContext(
            client_id=p.client_id if p else None,
            organisation=p.organisation if p else None,
            role=str(p.role) if p else None,
            user=p.user if p else None,
            request_id=self.request_id,
            correlation_id=self.correlation_id,
            source_ip=self.source_ip,
            routing_headers=self.routing,
        )

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with transaction(self.engine) as session:
            self.session = session
            try:
                yield session
            finally:
                self.session = None

    def repo(self, *, as_gateway: bool = False) -> Repository:
        assert self.session is not None, "open ctx.transaction() first"
        return Repository(
            self.session,
            None if as_gateway else self.principal,
            ig_reads_clinical=self.settings.ig_reads_clinical,
        )

    def audit(self, event: dict[str, Any]) -> int:
        assert self.session is not None, "audit inside the action's transaction"
        return audit_store.append(self.session, event)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)
