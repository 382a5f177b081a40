"""FHIR resources looked up for one tenant by an indexed token (a patient's by NHS number), with the tenant in the
SQL statement and no limit: every row that matches is returned, so nothing is decided on a partial
answer (a tenant's matches for one token are few; FHIR search, which pages, is Repository.search)."""

from __future__ import annotations

import orjson
from sqlalchemy import bindparam, select
from sqlmodel import Session

from gateway.auth.principal import Principal
from gateway.models import FhirResource, SearchToken
from gateway.storage.repository import Stored, execute, flush_pending
from gateway.storage.scope import ForTenant, scoped, tenant_of
from profiles import systems

_COLUMNS = (FhirResource.content, FhirResource.version_id, FhirResource.tenant, FhirResource.pk)
_BY_TOKEN = (
    select(*_COLUMNS)
    .join(SearchToken, SearchToken.resource_pk == FhirResource.pk)  # type: ignore[arg-type]
    .where(
        FhirResource.tenant == bindparam("tenant"),
        FhirResource.resource_type == bindparam("rtype"),
        SearchToken.param == bindparam("param"),
        SearchToken.value == bindparam("value"),
        SearchToken.system == bindparam("system"),
    )
    .order_by(FhirResource.pk.desc())  # type: ignore[union-attr]
)
# The token that names a resource's patient by NHS number: the look-up goes through the selective
# token index (param, value, system), then the tenant, rather than through all of a tenant's rows.
PATIENT_TOKEN = {"Patient": "identifier", "Consent": "patient:identifier"}


def _stored(rows: object) -> list[Stored]:
    return [Stored(orjson.loads(c), v, t, pk) for c, v, t, pk in rows]  # type: ignore[attr-defined]


@scoped(Principal, ForTenant)
def by_token(
    session: Session, scope: Principal | ForTenant, rtype: str, param: str, system: str, value: str
) -> list[Stored]:
    """Returns the tenant's resources whose `param` index holds exactly system|value, newest first."""
    params = {"tenant": tenant_of(scope), "rtype": rtype, "param": param, "system": system, "value": value[:200]}
    flush_pending(session)  # index rows of this transaction's own creates count too
    return _stored(execute(session, _BY_TOKEN, params))


@scoped(Principal, ForTenant)
def of_patient(session: Session, scope: Principal | ForTenant, rtype: str, nhs: str) -> list[Stored]:
    """Returns the tenant's resources of one type (a Patient, its Consents) about one patient, by NHS
    number, newest first."""
    return by_token(session, scope, rtype, PATIENT_TOKEN[rtype], systems.NHS_NUMBER, nhs)


@scoped(Principal, ForTenant)
def patient(session: Session, scope: Principal | ForTenant, nhs: str) -> Stored | None:
    """Returns the tenant's Patient with this NHS number (there is at most one: a unique index says so)."""
    found = of_patient(session, scope, "Patient", nhs)
    return found[0] if found else None
