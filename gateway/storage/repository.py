"""The FHIR resource repository: create, read, update, search, with tenant isolation enforced here.

Every read and search passes through `_visible`, the one place that says who sees what:
a referrer sees its own organisation's resources, a VCSE host the Tasks it owns, an IG
officer Consents (and clinical payloads only when configured), an admin no patient data.
A resource outside the caller's tenant is reported as not found (404), never 403, so that
ids cannot be probed. `principal=None` is the gateway itself (pipelines, worker): it may read and
write by id, but look-ups by value go through gateway/storage/resources.py, which needs a tenant.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Executable,
    Row,
    and_,
    delete,
    event,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    true,
)
from sqlalchemy import update as sa_update
from sqlmodel import Session

from gateway.auth.principal import Principal, Role
from gateway.models import FhirResource, Packet, Referral, ResourceVersion, SearchToken, now_utc
from gateway.storage.scope import ScopeRequired
from gateway.storage.searchparams import SEARCH_PARAMS, index_tokens
from profiles.outcomes import FhirError, Issue, bad_request, forbidden, not_found

# Prebuilt table-level statements: no ORM bookkeeping and no statement construction per row.
_INSERT_RESOURCE = insert(FhirResource.__table__).returning(FhirResource.__table__.c.pk)  # type: ignore[attr-defined]
_INSERT_VERSION = insert(ResourceVersion.__table__)  # type: ignore[attr-defined]
_INSERT_TOKEN = insert(SearchToken.__table__)  # type: ignore[attr-defined]
CLINICAL_TYPES = frozenset({"ServiceRequest", "Patient", "Observation", "Task"})
# A VCSE host knows a referral by its pseudonymous id only (docs/design.md IG rule 3): its view of a Task
# leaves out the element naming the patient, and it cannot search Tasks by patient.
VCSE_HIDDEN_TASK_ELEMENTS = ("for",)
VCSE_REFUSED_TASK_PARAMS = frozenset({"patient", "patient:identifier"})
DATE_PREFIXES = ("ge", "le", "gt", "lt", "eq")


@dataclass(frozen=True)
class Stored:
    """A resource as stored: its JSON (with id and meta) and the row's bookkeeping."""

    resource: dict[str, Any]
    version_id: int
    tenant: str
    pk: int


def execute(session: Session, statement: Executable, params: Any = None) -> CursorResult[Any]:
    """Runs a Core statement in the session's transaction, as `session.execute` would, without the ORM's
    per-statement machinery (half the cost of a small statement). Pending ORM objects are flushed
    first, as autoflush does. (audit/store.py has the same helper: audit/ does not import gateway/.)
    """
    if session.autoflush:
        session.flush()
    return session.connection().execute(statement, params)


def dumps(resource: dict[str, Any]) -> str:
    return orjson.dumps(resource).decode()


def fhir_instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Repository:
    def __init__(self, session: Session, principal: Principal | None, *, ig_reads_clinical: bool = False):
        self.session = session
        self.principal = principal
        self.ig_reads_clinical = ig_reads_clinical

    # -- who sees what -------------------------------------------------------------------------
    def _visible(self, resource_type: str) -> ColumnElement[bool]:
        p = self.principal
        if p is None:
            return true()
        if p.role is Role.REFERRER:
            return FhirResource.tenant == p.organisation
        if p.role is Role.VCSE:
            # Only Tasks of referrals a packet was issued to this host for: an addressed referral that
            # consent kept back reveals nothing (not its id, practice, date or reason).
            return and_(
                FhirResource.resource_type == "Task",
                FhirResource.audience == p.organisation,
                _disclosed_to(p.organisation),
            )
        if p.role is Role.IG_OFFICER:
            return true() if resource_type == "Consent" or self.ig_reads_clinical else false()
        return false()

    def _shown(self, resource_type: str, content: str | bytes) -> dict[str, Any]:
        """Returns a stored resource as this caller may see it (a VCSE host never sees who a Task is for)."""
        resource: dict[str, Any] = orjson.loads(content)
        p = self.principal
        if p is not None and p.role is Role.VCSE and resource_type == "Task":
            for element in VCSE_HIDDEN_TASK_ELEMENTS:
                resource.pop(element, None)
        return resource

    # -- writes --------------------------------------------------------------------------------
    # Writes go through Core statements (not ORM objects): a referral writes a dozen rows and
    # two dozen index tokens, and ORM object construction and flushing was most of its cost.
    def create(
        self,
        resource: dict[str, Any],
        *,
        tenant: str,
        audience: str | None = None,
        patient_nhs: str | None = None,
        date: datetime | None = None,
        resource_id: str | None = None,
    ) -> Stored:
        """Returns the stored resource, with a new id, versionId 1 and lastUpdated set."""
        rtype = resource["resourceType"]
        now = now_utc()
        rid = resource_id or str(uuid.uuid4())
        body = self._stamp(resource, rid, 1, now)
        content = dumps(body)
        pk = execute(
            self.session,
            _INSERT_RESOURCE,
            {
                "resource_type": rtype,
                "id": rid,
                "version_id": 1,
                "tenant": tenant,
                "audience": audience,
                "patient_nhs": patient_nhs,
                "date": date,
                "status": body.get("status"),
                "last_updated": now,
                "content": content,
            },
        ).scalar_one()
        self._write_version_and_index(pk, rtype, 1, now, content, body)
        return Stored(body, 1, tenant, pk)

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        *,
        if_match: int | None = None,
        audience: str | bool | None = False,
        date: datetime | None = None,
    ) -> Stored:
        """Returns the new version; 404 when not visible, 412 when `if_match` is not the current version."""
        row = self._row(resource_type, resource_id, for_update=True)
        if if_match is not None and if_match != row.version_id:
            raise FhirError(
                412,
                [Issue("conflict", f"If-Match names version {if_match} but the current version is {row.version_id}")],
            )
        now = now_utc()
        version = row.version_id + 1
        body = self._stamp(resource, resource_id, version, now)
        content = dumps(body)
        values: dict[str, Any] = {
            "version_id": version,
            "content": content,
            "status": body.get("status"),
            "last_updated": now,
        }
        if audience is not False:
            values["audience"] = audience
        if date is not None:
            values["date"] = date
        # ORM-enabled UPDATE and DELETE (they keep loaded objects in step): through the session.
        self.session.execute(sa_update(FhirResource).where(FhirResource.pk == row.pk).values(**values))
        self.session.execute(delete(SearchToken).where(SearchToken.resource_pk == row.pk))
        self._write_version_and_index(row.pk, resource_type, version, now, content, body)
        return Stored(body, version, row.tenant, row.pk)

    def _stamp(self, resource: dict[str, Any], rid: str, version: int, now: datetime) -> dict[str, Any]:
        body = dict(resource)
        body["id"] = rid
        meta = dict(body.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = fhir_instant(now)
        body["meta"] = meta
        return body

    def _write_version_and_index(
        self, pk: int, rtype: str, version: int, now: datetime, content: str, body: dict[str, Any]
    ) -> None:
        # Version and index rows wait in the session and go in one executemany each, before the
        # next read of this repository or the commit (`flush_pending`): a referral's four creates
        # then cost two statements for their history and search tokens, not eight.
        pending = _pending(self.session)
        pending["versions"].append({"resource_pk": pk, "version_id": version, "last_updated": now, "content": content})
        pending["tokens"].extend(
            {"resource_pk": pk, "param": param, "system": system, "value": value}
            for param, system, value in index_tokens(rtype, body)
        )

    # -- reads ---------------------------------------------------------------------------------
    def _row(self, resource_type: str, resource_id: str, *, for_update: bool = False) -> Row[Any]:
        """Returns (pk, version_id, tenant, content) of a visible resource; 404 otherwise."""
        flush_pending(self.session)
        query = select(FhirResource.pk, FhirResource.version_id, FhirResource.tenant, FhirResource.content).where(
            FhirResource.resource_type == resource_type,
            FhirResource.id == resource_id,
            self._visible(resource_type),
        )
        if for_update:
            query = query.with_for_update()
        row = execute(self.session, query).first()
        if row is None:
            raise not_found(f"{resource_type}/{resource_id} is not known")
        return row

    def read(self, resource_type: str, resource_id: str) -> Stored:
        row = self._row(resource_type, resource_id)
        return Stored(self._shown(resource_type, row.content), row.version_id, row.tenant, row.pk)

    def read_version(self, resource_type: str, resource_id: str, version: int) -> dict[str, Any]:
        row = self._row(resource_type, resource_id)
        found = execute(
            self.session,
            select(ResourceVersion.content).where(
                ResourceVersion.resource_pk == row.pk, ResourceVersion.version_id == version
            ),
        ).scalar()
        if found is None:
            raise not_found(f"{resource_type}/{resource_id} has no version {version}")
        return self._shown(resource_type, found)

    def find_by_token(self, resource_type: str, param: str, system: str, value: str) -> list[Stored]:
        """Returns every resource visible to the caller whose `param` index holds exactly system|value
        (newest first), paging through the search until the end: never a truncated answer.

        The gateway itself has no "everything" view: it looks up by value for one tenant, through
        gateway/storage/resources.py.
        """
        if self.principal is None:
            raise ScopeRequired("the gateway looks resources up by value for one tenant: use gateway.storage.resources")
        found: list[Stored] = []
        while True:
            items, more = self.search(resource_type, [(param, f"{system}|{value}")], count=500, offset=len(found))
            found.extend(items)
            if not more:
                return found

    def search(
        self,
        resource_type: str,
        params: list[tuple[str, str]],
        *,
        count: int,
        offset: int,
        sort: list[tuple[str, bool]] | None = None,
    ) -> tuple[list[Stored], bool]:
        """Returns one page of matches (newest first, or by `sort`: (key, descending) pairs whose keys
        are `SORT_KEYS`) and whether there are more."""
        flush_pending(self.session)
        query = (
            select(FhirResource.content, FhirResource.version_id, FhirResource.tenant, FhirResource.pk)
            .where(*self._conditions(resource_type, params))
            .order_by(*_order(sort))
            .offset(offset)
            .limit(count + 1)
        )
        rows = list(execute(self.session, query))
        items = [Stored(self._shown(resource_type, c), v, t, pk) for c, v, t, pk in rows[:count]]
        return items, len(rows) > count

    def count(self, resource_type: str, params: list[tuple[str, str]]) -> int:
        """Returns how many visible resources match (the searchset's `total`); tenancy in the same SQL."""
        flush_pending(self.session)
        query = select(func.count()).select_from(FhirResource).where(*self._conditions(resource_type, params))
        return int(execute(self.session, query).scalar_one())

    def read_many(self, resource_type: str, ids: list[str]) -> list[Stored]:
        """Returns the visible resources of this type among `ids` (for `_include`); others are left out."""
        if not ids:
            return []
        flush_pending(self.session)
        query = (
            select(FhirResource.content, FhirResource.version_id, FhirResource.tenant, FhirResource.pk)
            .where(
                FhirResource.resource_type == resource_type,
                FhirResource.id.in_(ids[:_MAX_INCLUDED]),  # type: ignore[attr-defined]
                self._visible(resource_type),
            )
            .order_by(FhirResource.pk.desc())  # type: ignore[union-attr]
        )
        return [Stored(self._shown(resource_type, c), v, t, pk) for c, v, t, pk in execute(self.session, query)]

    def history(self, resource_type: str, resource_id: str) -> list[tuple[int, datetime, dict[str, Any]]]:
        """Returns every version of a visible resource, newest first: (version, lastUpdated, resource)."""
        row = self._row(resource_type, resource_id)
        found = execute(
            self.session,
            select(ResourceVersion.version_id, ResourceVersion.last_updated, ResourceVersion.content)
            .where(ResourceVersion.resource_pk == row.pk)
            .order_by(ResourceVersion.version_id.desc())  # type: ignore[attr-defined]
            .limit(_MAX_HISTORY),
        )
        return [(v, when, self._shown(resource_type, c)) for v, when, c in found]

    def _conditions(self, resource_type: str, params: list[tuple[str, str]]) -> list[ColumnElement[bool]]:
        """The WHERE of a search: its type, the caller's tenancy, then one condition per parameter."""
        known = SEARCH_PARAMS.get(resource_type, {})
        conditions: list[ColumnElement[bool]] = [
            FhirResource.resource_type == resource_type,
            self._visible(resource_type),
        ]
        for name, raw in params:
            if name == "_id":
                conditions.append(FhirResource.id.in_(raw.split(",")))  # type: ignore[attr-defined]
                continue
            if name == "_lastUpdated":
                conditions.append(_date_condition(name, raw, FhirResource.last_updated))
                continue
            param = known.get(name)
            if param is None:
                supported = ", ".join(sorted([*known, *COMMON_PARAMS])) or "none"
                raise bad_request(
                    f"Unknown search parameter '{name}' for {resource_type}; supported: {supported}",
                    expression=name,
                    code="not-supported",
                )
            if self.principal is not None and self.principal.role is Role.VCSE and name in VCSE_REFUSED_TASK_PARAMS:
                raise forbidden(
                    f"A VCSE host cannot search {resource_type} by '{name}': it knows referrals by referral id only"
                )
            if param.type == "date":
                conditions.append(_date_condition(name, raw))
            else:
                conditions.append(_token_condition(name, raw))
        return conditions


# Parameters every resource type answers (FHIR R4 §3.1.1.5: _id and _lastUpdated apply to all resources).
COMMON_PARAMS = ("_id", "_lastUpdated")
# `_sort` keys: a date search parameter sorts by the `date` column, `_lastUpdated` by last_updated.
SORT_KEYS = {"_lastUpdated": FhirResource.last_updated}
_MAX_INCLUDED = 1000
_MAX_HISTORY = 1000


def _order(sort: list[tuple[str, bool]] | None) -> list[Any]:
    """ORDER BY for `_sort` (newest first when none), with pk as the tie-break so that pages are stable."""
    order: list[Any] = []
    for key, descending in sort or []:
        column = SORT_KEYS.get(key, FhirResource.date)
        order.append(column.desc() if descending else column.asc())  # type: ignore[union-attr,attr-defined]
    order.append(FhirResource.pk.desc())  # type: ignore[union-attr]
    return order


def _disclosed_to(host: str) -> ColumnElement[bool]:
    """True for the Task rows of referrals a referral packet was issued to `host` for (the same rule as
    the VCSE API's, gateway/storage/packets.py: a host sees what is addressed and disclosed to it)."""
    return exists().where(
        Referral.task_id == FhirResource.id,
        Packet.referral_id == Referral.referral_id,
        Packet.kind == "referral",
        Packet.recipient == host,
    )


def _pending(session: Session) -> dict[str, list[dict[str, Any]]]:
    return session.info.setdefault(_PENDING, {"versions": [], "tokens": []})


def flush_pending(session: Session) -> None:
    """Writes the version and search-token rows this session's creates and updates are holding."""
    pending = session.info.get(_PENDING)
    if not pending:
        return
    versions, tokens = pending["versions"], pending["tokens"]
    if versions:
        execute(session, _INSERT_VERSION, versions)
    if tokens:
        execute(session, _INSERT_TOKEN, tokens)
    pending["versions"], pending["tokens"] = [], []


def discard_pending(session: Session) -> None:
    """Forgets held rows whose resources a rollback has just undone."""
    session.info.pop(_PENDING, None)


_PENDING = "spgw.pending-index-rows"
# Whatever path commits the session, the held rows go in first, in the same transaction; a
# rollback takes them away with the resources they index. (Savepoints: see gateway/bulk.py.)
event.listen(Session, "before_commit", flush_pending)
event.listen(Session, "after_rollback", discard_pending)


def _token_condition(name: str, raw: str) -> ColumnElement[bool]:
    alternatives = []
    for value in raw.split(","):
        if "|" in value:
            system, _, code_value = value.partition("|")
            cond = and_(SearchToken.param == name, SearchToken.value == code_value, SearchToken.system == system)
        else:
            cond = and_(SearchToken.param == name, SearchToken.value == value)
        alternatives.append(cond)
    sub = select(SearchToken.resource_pk).where(or_(*alternatives))
    return FhirResource.pk.in_(sub)  # type: ignore[union-attr]


def _date_condition(name: str, raw: str, column: Any = None) -> ColumnElement[bool]:
    prefix, text = (raw[:2], raw[2:]) if raw[:2] in DATE_PREFIXES else ("eq", raw)
    try:
        start, end = _date_range(text)
    except (ValueError, OverflowError):  # OverflowError: the interval ends past year 9999 (9999-12-31)
        raise bad_request(
            f"'{raw}' is not a FHIR date for '{name}' (use e.g. ge2026-01-01 or le2026-11-20T10:00:00Z)",
            expression=name,
        ) from None
    column = FhirResource.date if column is None else column
    return {
        "eq": and_(column >= start, column < end),
        "ge": column >= start,
        "gt": column >= end,
        "lt": column < start,
        "le": column < end,
    }[prefix]


def _date_range(text: str) -> tuple[datetime, datetime]:
    """Returns the [start, end) interval a FHIR date/dateTime search value covers (R4 §3.1.1.4.2)."""
    if len(text) == 4:
        start = datetime(int(text), 1, 1, tzinfo=UTC)
        return start, start.replace(year=start.year + 1)
    if len(text) == 7:
        start = datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start, end
    if len(text) == 10:
        start = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return start, start + timedelta(days=1)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment, moment + timedelta(seconds=1)
