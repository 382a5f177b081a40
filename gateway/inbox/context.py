"""A console person acting for their VCSE host goes through the same pipeline as the host's API client.

The pipeline functions behind /vcse/v1 (packet reads with the consent re-check and narrowing, status
changes, outcomes) take a RequestContext whose principal is the host. This builds one from the signed-in
viewer, so the inbox cannot drift from the API: same checks, same tenancy (`principal.organisation`),
same audit events, with the person named in them.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from audit.events import AuditContext
from gateway.auth.principal import ROLE_SCOPES, Principal, Role
from gateway.console.web import CONSOLE_CLIENT, Viewer, state
from gateway.context import RequestContext
from gateway.deps import base_url


@dataclass
class ConsoleHostContext(RequestContext):
    """A RequestContext whose audit "who" is the console person (client `console`, role vcse-staff)."""

    person: AuditContext | None = None

    @property
    def audit_context(self) -> AuditContext:
        assert self.person is not None
        return self.person


def host_context(request: Request, viewer: Viewer) -> ConsoleHostContext:
    """Returns the context for `viewer` acting for their own host (their account's organisation)."""
    app = state(request)
    principal = Principal(
        CONSOLE_CLIENT,
        viewer.user.organisation_id,
        Role.VCSE,
        frozenset(ROLE_SCOPES[Role.VCSE]),
        viewer.user.username,
    )
    person = viewer.audit_context(request)
    return ConsoleHostContext(
        engine=app.engine,
        settings=app.settings,
        principal=principal,
        request_id=person.request_id,
        correlation_id=None,
        base_url=base_url(request, app),
        source_ip=person.source_ip,
        person=person,
    )
