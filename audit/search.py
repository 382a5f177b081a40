"""Searching the audit log by its index columns: FHIR R4 AuditEvent search parameters as data.

Each parameter names the column it reads and how a value becomes a condition:

| parameter            | column                | how                                                      |
| -------------------- | --------------------- | -------------------------------------------------------- |
| `patient:identifier` | patient_nhs           | token `https://fhir.nhs.uk/Id/nhs-number|<nhs>` (or bare) |
| `date`               | recorded              | prefixes ge, le, gt, lt, eq over the value's precision    |
| `agent`              | agent_orgs            | one organisation id (ODS code or `system|value`) among the agents |
| `entity`             | entity_refs           | one reference (`ServiceRequest/123`) or identifier token  |
| `type`, `subtype`    | type_code, subtype_code | code, or `system|code`                                 |
| `action`, `outcome`  | action, outcome       | code                                                     |

A comma inside a value means "any of these" (FHIR R4 search §3.1.1.5.6); repeating a
parameter means "all of these". Archived entries (content moved to a segment file) are
counted but not returned: their content is no longer in the database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, func, literal, or_, select
from sqlmodel import Session

from audit.events import (
    AUDIT_EVENT_TYPE,
    BALP_AUTHZ_SUBTYPE,
    DCM,
    ISO_LIFECYCLE,
    LOCAL_AUDIT_SUBTYPE,
    LOCAL_CLIENT_ID,
    RESTFUL_INTERACTION,
)
from audit.store import AuditEntry

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
TYPE_SYSTEMS = frozenset({AUDIT_EVENT_TYPE, DCM})
SUBTYPE_SYSTEMS = frozenset({RESTFUL_INTERACTION, DCM, ISO_LIFECYCLE, BALP_AUTHZ_SUBTYPE, LOCAL_AUDIT_SUBTYPE})
OUTCOME_CODES = frozenset({"0", "4", "8", "12"})
ACTION_CODES = frozenset({"C", "R", "U", "D", "E"})
_DATE_RE = re.compile(r"\A(ge|le|gt|lt|eq)?(\d{4}(?:-\d{2}(?:-\d{2}(?:T.+)?)?)?)\Z")
_CLIENT_ID_RE = re.compile(r"\A[A-Za-z0-9._-]{1,100}\Z")
_SORTS = {"date": AuditEntry.seq.asc(), "-date": AuditEntry.seq.desc()}  # type: ignore[attr-defined]


class AuditSearchError(ValueError):
    """A search parameter or value the audit search does not understand (HTTP 400)."""

    def __init__(self, message: str, parameter: str) -> None:
        super().__init__(message)
        self.parameter = parameter


Condition = ColumnElement[bool]


def _word_in(column: Any, word: str) -> Condition:
    """True when `word` is one of the space-separated words of `column` (LIKE wildcards escaped)."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return (literal(" ") + column + literal(" ")).like(f"% {escaped} %", escape="\\")


def _code(systems: frozenset[str], allowed: frozenset[str] | None = None) -> Callable[[Any, str, str], Condition]:
    """A token over a code column: `code` or `system|code`; a system we never write matches nothing."""

    def condition(column: Any, value: str, name: str) -> Condition:
        system, bar, code = value.rpartition("|")
        if not code:
            raise AuditSearchError(f"{name} needs a code, as code or system|code", name)
        if allowed is not None and code not in allowed:
            raise AuditSearchError(f"{name} must be one of {', '.join(sorted(allowed))}", name)
        if bar and system and system not in systems:
            return literal(False)
        return column == code

    return condition


def _patient(column: Any, value: str, name: str) -> Condition:
    system, bar, nhs = value.rpartition("|")
    if bar and system and system != NHS_NUMBER_SYSTEM:
        raise AuditSearchError(f"{name} takes an NHS number: {NHS_NUMBER_SYSTEM}|<10 digits>", name)
    if not re.fullmatch(r"[0-9]{10}", nhs):
        raise AuditSearchError(f"{name} takes an NHS number of 10 digits", name)
    return column == nhs


def _word(column: Any, value: str, name: str) -> Condition:
    if not value or " " in value:
        raise AuditSearchError(f"{name} takes one identifier or reference without spaces", name)
    return _word_in(column, value)


def _date_range(text: str, name: str) -> tuple[datetime, datetime]:
    """Returns [start, end) in UTC for a FHIR date or dateTime at its own precision (dates are UTC days)."""
    try:
        if len(text) == 4:
            start = datetime(int(text), 1, 1, tzinfo=UTC)
            return start, datetime(start.year + 1, 1, 1, tzinfo=UTC)
        if len(text) == 7:
            start = datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
            return start, (start + timedelta(days=32)).replace(day=1)
        if len(text) == 10:
            start = datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
            return start, start + timedelta(days=1)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AuditSearchError(f"{name}={text} is not a FHIR date or dateTime", name) from None
    if moment.tzinfo is None:
        raise AuditSearchError(f"{name}: a dateTime needs a time zone (e.g. Z)", name)
    start = moment.astimezone(UTC)
    precision = timedelta(microseconds=1) if moment.microsecond else timedelta(seconds=1)
    return start, start + precision


def _date(column: Any, value: str, name: str) -> Condition:
    match = _DATE_RE.match(value)
    if match is None:
        raise AuditSearchError(f"{name} takes [ge|le|gt|lt|eq]YYYY[-MM[-DD[Thh:mm:ssZ]]]", name)
    prefix, text = match.group(1) or "eq", match.group(2)
    start, end = _date_range(text, name)
    # FHIR R4 search §3.1.1.4.1: the value is a range at its precision; recorded is an instant.
    return {
        "eq": and_(column >= start, column < end),
        "ge": column >= start,
        "gt": column >= end,
        "le": column < end,
        "lt": column < start,
    }[prefix]


@dataclass(frozen=True)
class AuditParam:
    """One search parameter: the column it reads, how a value becomes a condition, and its documentation."""

    name: str
    type: str  # FHIR search parameter type, for the CapabilityStatement
    column: Any
    condition: Callable[[Any, str, str], Condition]
    documentation: str
    allows_or: bool = True


SEARCH_PARAMS: dict[str, AuditParam] = {
    p.name: p
    for p in (
        AuditParam(
            "patient:identifier",
            "token",
            AuditEntry.patient_nhs,
            _patient,
            "The patient's NHS number: https://fhir.nhs.uk/Id/nhs-number|<nhs number>",
        ),
        AuditParam(
            "date",
            "date",
            AuditEntry.recorded,
            _date,
            "When the event was recorded; prefixes ge, le, gt, lt, eq",
            allows_or=False,
        ),
        AuditParam(
            "agent",
            "token",
            AuditEntry.agent_orgs,
            _word,
            "An organisation taking part (ODS code, or system|value for one without an ODS code)",
        ),
        AuditParam(
            "entity",
            "reference",
            AuditEntry.entity_refs,
            _word,
            "A resource the event is about (e.g. ServiceRequest/123), or an identifier token system|value",
        ),
        AuditParam("type", "token", AuditEntry.type_code, _code(TYPE_SYSTEMS), "Event type: code or system|code"),
        AuditParam(
            "subtype", "token", AuditEntry.subtype_code, _code(SUBTYPE_SYSTEMS), "Event subtype: code or system|code"
        ),
        AuditParam("action", "token", AuditEntry.action, _code(frozenset(), ACTION_CODES), "C, R, U, D or E"),
        AuditParam(
            "outcome", "token", AuditEntry.outcome, _code(frozenset(), OUTCOME_CODES), "0 success, 4/8/12 failures"
        ),
    )
}
CONTROL = frozenset({"_sort"})


@dataclass(frozen=True)
class AuditPage:
    """One page of matching entries (resources as stored) and what else matched."""

    resources: list[dict[str, Any]]
    has_more: bool
    archived_matches: int


def conditions(params: list[tuple[str, str]]) -> list[Condition]:
    """Returns the SQL conditions for these parameters; raises AuditSearchError for an unknown or bad one."""
    out: list[Condition] = []
    for name, value in params:
        if name in CONTROL:
            continue
        param = SEARCH_PARAMS.get(name)
        if param is None:
            known = ", ".join(sorted(SEARCH_PARAMS))
            raise AuditSearchError(f"AuditEvent has no search parameter '{name}'; it has {known}", name)
        values = value.split(",") if param.allows_or else [value]
        out.append(or_(*(param.condition(param.column, v.strip(), name) for v in values)))
    return out


def sort_order(params: list[tuple[str, str]]) -> Any:
    """Returns the ORDER BY for `_sort` (date or -date; default oldest first, which pages stably)."""
    sorts = [v for k, v in params if k == "_sort"]
    if not sorts:
        return _SORTS["date"]
    if len(sorts) > 1 or sorts[0] not in _SORTS:
        raise AuditSearchError("_sort takes date or -date", "_sort")
    return _SORTS[sorts[0]]


def client_condition(client_id: str) -> Condition:
    """Entries in which the API client `client_id` took part (its agent identifier, as the stored
    canonical JSON spells it: keys sorted, no spaces). Raises AuditSearchError for a malformed id.

    Client ids are not a search column: the condition reads the content, so it matches live entries
    only (archived ones have none), which is what a page of results shows anyway."""
    if not _CLIENT_ID_RE.match(client_id):
        raise AuditSearchError("a client id is 1 to 100 letters, digits, dots, hyphens or underscores", "client")
    spelled = orjson.dumps({"system": LOCAL_CLIENT_ID, "value": client_id}).decode()
    escaped = spelled.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return AuditEntry.content.like(f"%{escaped}%", escape="\\")  # type: ignore[union-attr]


def search(
    session: Session,
    params: list[tuple[str, str]],
    *,
    count: int,
    offset: int,
    extra: Sequence[Condition] = (),
) -> AuditPage:
    """Returns the page of entries matching every parameter and `extra` condition (count rows from offset)."""
    where = [*conditions(params), *extra]
    order = sort_order(params)
    live = select(AuditEntry.content).where(*where, AuditEntry.content.is_not(None)).order_by(order)  # type: ignore[union-attr]
    rows = session.scalars(live.offset(offset).limit(count + 1)).all()
    archived = session.scalar(
        select(func.count()).select_from(AuditEntry).where(*where, AuditEntry.content.is_(None))  # type: ignore[union-attr]
    )
    resources = [orjson.loads(content) for content in rows[:count]]
    return AuditPage(resources=resources, has_more=len(rows) > count, archived_matches=int(archived or 0))


def read(session: Session, seq: int) -> AuditEntry | None:
    """Returns the stored entry `seq`, or None."""
    return session.get(AuditEntry, seq)
