"""Consents given and withdrawn per month, from every stored version of every Consent.

A version counts when it changes what the patient has agreed: the first version that permits
sharing is a consent given; a later version (or a new Consent) that denies or ends it is a
withdrawal (R4 Consent.status inactive or rejected, or provision.type deny, as the demo's
withdrawal is); a version that changes nothing in that sense is not counted again.
Consents are visible to IG officers across the whole gateway (repository `_visible`), so this
read, which only an IG officer may make, is not narrowed to one tenant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

import orjson
from sqlalchemy import select
from sqlmodel import Session

from consent.history import GIVEN, WITHDRAWN, classify
from gateway.auth.principal import Principal, Role
from gateway.models import FhirResource, ResourceVersion
from gateway.storage.scope import ScopeRequired, scoped

__all__ = ["GIVEN", "WITHDRAWN", "consents_per_month"]


@scoped(Principal)
def consents_per_month(
    session: Session, scope: Principal, month_of: Callable[[datetime], str]
) -> Counter[tuple[str, str]]:
    """Returns {(month, 'given' | 'withdrawn'): count} of the changes the Consent versions record, for an
    IG officer only (numbers across every tenant, nothing about a person)."""
    if scope.role is not Role.IG_OFFICER:
        raise ScopeRequired(f"consent statistics are for IG officers, not {scope.role}")
    query = (
        select(ResourceVersion.resource_pk, ResourceVersion.last_updated, ResourceVersion.content)
        .join(FhirResource, FhirResource.pk == ResourceVersion.resource_pk)  # type: ignore[arg-type]
        .where(FhirResource.resource_type == "Consent")
        .order_by(ResourceVersion.resource_pk, ResourceVersion.version_id)  # type: ignore[arg-type]
    )
    counts: Counter[tuple[str, str]] = Counter()
    previous: dict[int, str | None] = {}
    for resource_pk, last_updated, content in session.execute(query):
        state = classify(orjson.loads(content))
        changed = state is not None and previous.get(resource_pk) != state
        previous[resource_pk] = state
        if changed:
            counts[(month_of(last_updated), state)] += 1  # type: ignore[index]
    return counts
