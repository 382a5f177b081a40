"""The disclosure decision: may organisation X receive categories Y about this patient for purpose Z now?

Input is the patient's R4 Consent resources as stored JSON (dicts). The model is opt-in to
share with a named organisation (DESIGN.md, "Consent"): only a Consent whose root
`provision` is a `permit` naming the recipient as an information recipient (IRCP) can
allow a disclosure; everything else, including an unreadable element, reads as "do not
disclose". docs/consent.md states each rule in plain English.

Pure: no I/O, no clock (`now` is a parameter), nothing patient-identifying in the reasons.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from consent.categories import ALL_CATEGORIES, PURPOSE_SYSTEM, SOCIAL_PRESCRIBING_PURPOSE
from profiles.systems import CONSENT_ACTION, LOCAL_DATA_CATEGORY, ODS_CODE, V3_PARTICIPATION_TYPE, VCSE_ORG_ID

IRCP = "IRCP"  # v3-ParticipationType "information recipient"
DISCLOSE = "disclose"  # consentaction#disclose
RECIPIENT_SYSTEMS = frozenset({ODS_CODE, VCSE_ORG_ID})

# Reference.reference naming an Organization by logical id; FHIR ids are [A-Za-z0-9\-\.]{1,64}.
_ORGANIZATION_REF = re.compile(r"(?:^|/)Organization/([A-Za-z0-9\-.]{1,64})$")
_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?$")
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)

Kind = Literal["permit", "deny"]


@dataclass(frozen=True)
class Decision:
    """The answer for one recipient: which of the requested categories may go, and on what basis."""

    permit: bool
    categories: frozenset[str]
    consent_id: str | None
    reason: str
    # True when the recipient was named only by Consents whose period has run out: a host told to
    # stop gets "consent-expired" rather than "consent-withdrawn".
    lapsed: bool = False


@dataclass(frozen=True)
class _Reading:
    """One Consent that applies to the recipient now, reduced to what it grants or withdraws."""

    consent_id: str | None
    label: str
    kind: Kind
    categories: frozenset[str]
    order: tuple[datetime, datetime, int]


def decide(
    consents: Sequence[dict[str, Any]],
    *,
    recipient: str,
    purpose: str,
    categories: Collection[str],
    now: datetime,
) -> Decision:
    """Returns whether `recipient` may receive `categories` for `purpose` at `now`, and why."""
    requested = _requested(categories)
    _require_aware(now)
    if not recipient:
        raise ValueError("recipient must be an ODS code or a VCSE organisation id")
    if not consents:
        return Decision(False, frozenset(), None, "no consent on record for this patient")

    readings: list[_Reading] = []
    notes: list[str] = []
    for consent in consents:
        reading, note = _read(consent, recipient=recipient, purpose=purpose, now=now)
        if reading is not None:
            readings.append(reading)
        elif note is not None:
            notes.append(note)
    if not readings:
        why = f"no active consent names {recipient} as a recipient"
        lapsed = bool(notes) and all(n.endswith(_OUT_OF_PERIOD) for n in notes)
        return Decision(False, frozenset(), None, f"{why} ({notes[0]})" if notes else why, lapsed=lapsed)
    return _fold(sorted(readings, key=lambda r: r.order), recipient=recipient, requested=requested)


def named_recipients(consent: dict[str, Any]) -> set[str]:
    """Returns the organisations the root provision names as information recipients (IRCP)."""
    return set(_recipients(_provision(consent)))


def withdrawn_recipients(
    before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]], *, now: datetime
) -> set[str]:
    """Returns the recipients permitted any category before a change and none after it.

    Each of them is owed a cease notice. A change that only narrows the categories leaves the
    recipient permitted: later packets shrink, and no cease notice is due.
    """
    candidates = {r for consent in before for r in named_recipients(consent)}

    def permitted(consents: Sequence[dict[str, Any]], recipient: str) -> bool:
        return decide(
            consents, recipient=recipient, purpose=SOCIAL_PRESCRIBING_PURPOSE,
            categories=ALL_CATEGORIES, now=now,
        ).permit

    return {r for r in candidates if permitted(before, r) and not permitted(after, r)}


def _fold(readings: list[_Reading], *, recipient: str, requested: frozenset[str]) -> Decision:
    """Replays the applicable Consents oldest first: a permit replaces, a deny subtracts."""
    granted: frozenset[str] = frozenset()
    permit_by: _Reading | None = None
    withdrawn_by: _Reading | None = None
    for reading in readings:
        if reading.kind == "permit":
            # The patient's latest permit is their current wish for this recipient.
            granted, permit_by, withdrawn_by = reading.categories, reading, None
        else:
            if reading.categories & requested:
                withdrawn_by = reading
            granted = granted - reading.categories

    allowed = granted & requested
    if allowed and permit_by is not None:
        reason = f"{permit_by.label} permits disclosure to {recipient} of {_listed(allowed)}"
        if requested - allowed:
            reason += f"; not of {_listed(requested - allowed)}"
        return Decision(True, allowed, permit_by.consent_id, reason)
    if withdrawn_by is not None:
        refused = _listed(withdrawn_by.categories & requested)
        reason = f"{withdrawn_by.label} refuses disclosure to {recipient} of {refused}"
        return Decision(False, frozenset(), withdrawn_by.consent_id, reason)
    if permit_by is not None:
        scope = _listed(granted) if granted else "no data category"
        reason = f"{permit_by.label} permits {recipient} only {scope}, none of the requested categories"
        return Decision(False, frozenset(), permit_by.consent_id, reason)
    # Only refusals apply and none of them covers a requested category: still nothing permits.
    return Decision(False, frozenset(), None, f"no active consent names {recipient} as a recipient")


_OUT_OF_PERIOD = "is not in force now (provision.period)"


def _read(
    consent: dict[str, Any], *, recipient: str, purpose: str, now: datetime
) -> tuple[_Reading | None, str | None]:
    """Returns the Consent as a reading if it applies to recipient now, else a note on why not."""
    provision = _provision(consent)
    label = _label(consent)
    kind = provision.get("type")
    named = _recipients(provision)
    names, names_nobody = recipient in named, not named
    if kind == "permit" and not names:
        return None, None
    if kind == "deny" and not (names or names_nobody):
        return None, None

    def unused(why: str) -> tuple[None, str | None]:
        # Explain only Consents that name this recipient; the rest are not about it.
        return None, (f"{label} {why}" if names else None)

    if kind not in ("permit", "deny"):
        # Opt-in must be explicit (DESIGN.md: provision.type permit); an untyped root grants nothing.
        return unused("has no provision.type permit")
    if consent.get("status") != "active":
        # Consent.status: only `active` is in force; `inactive` is how a patient withdraws.
        return unused(f"is {consent.get('status') or 'without a status'}")
    in_period = _period_state(provision.get("period"), now)
    if in_period is False or (in_period is None and kind == "permit"):
        return unused(_OUT_OF_PERIOD)
    if not _allows_disclose(provision):
        return unused("does not cover disclosure (provision.action)")
    if not _covers_purpose(provision, purpose):
        return unused(f"does not cover purpose {purpose} (provision.purpose)")
    if kind == "permit":
        cats = _permitted(provision, recipient=recipient, purpose=purpose, now=now)
    else:
        cats = _category_codes(provision, deny=True) or ALL_CATEGORIES
    return _Reading(consent.get("id"), label, kind, cats, _order(consent, kind)), None


def _permitted(provision: dict[str, Any], *, recipient: str, purpose: str, now: datetime) -> frozenset[str]:
    """Returns the categories a root permit grants recipient, after its nested provisions.

    Codes on the root and on applicable nested permits together list what is permitted (none
    anywhere = every category); applicable nested denies take theirs away (none = everything).
    """
    limits: list[frozenset[str]] = []
    root_codes = _category_codes(provision, deny=False)
    if root_codes is not None:
        limits.append(root_codes)
    removed: set[str] = set()
    for sub in _nested(provision):
        is_deny = sub.get("type") != "permit"  # R4 requires a type on nested rules; missing reads as deny
        if not _nested_applies(sub, recipient=recipient, purpose=purpose, now=now, is_deny=is_deny):
            continue
        codes = _category_codes(sub, deny=is_deny)
        if is_deny:
            removed |= ALL_CATEGORIES if codes is None else codes
        else:
            limits.append(ALL_CATEGORIES if codes is None else codes)
    base = frozenset().union(*limits) if limits else ALL_CATEGORIES
    return base - removed


def _nested_applies(
    sub: dict[str, Any], *, recipient: str, purpose: str, now: datetime, is_deny: bool
) -> bool:
    """A nested rule applies unless it clearly excludes this recipient, time, action or purpose."""
    actors = _recipients(sub)
    if actors and recipient not in actors:
        return False
    in_period = _period_state(sub.get("period"), now)
    if in_period is None:
        return is_deny  # unreadable: a refusal still counts, a grant does not
    return in_period and _allows_disclose(sub) and _covers_purpose(sub, purpose)


def _nested(provision: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yields every nested Consent.provision.provision, depth first."""
    for sub in provision.get("provision") or []:
        if isinstance(sub, dict):
            yield sub
            yield from _nested(sub)


def _category_codes(provision: dict[str, Any], *, deny: bool) -> frozenset[str] | None:
    """Returns the data categories in provision.code, or None when it has no code.

    A code we cannot read as one of our categories (another system, an unknown code) grants
    nothing in a permit and withholds everything in a deny.
    """
    concepts = provision.get("code") or []
    if not concepts:
        return None
    found: set[str] = set()
    for concept in concepts:
        ours = {
            str(c.get("code")) for c in (concept or {}).get("coding") or []
            if c.get("system") == LOCAL_DATA_CATEGORY and c.get("code") in ALL_CATEGORIES
        }
        if not ours and deny:
            return ALL_CATEGORIES
        found |= ours
    return frozenset(found)


def _recipients(provision: dict[str, Any]) -> list[str]:
    """Returns the organisations named by provision.actor entries with role IRCP."""
    out: list[str] = []
    for actor in provision.get("actor") or []:
        codings = ((actor or {}).get("role") or {}).get("coding") or []
        if not any(c.get("system") == V3_PARTICIPATION_TYPE and c.get("code") == IRCP for c in codings):
            continue
        named = _organisation(actor.get("reference") or {})
        if named:
            out.append(named)
    return out


def _organisation(reference: dict[str, Any]) -> str | None:
    """Returns the organisation a Reference identifies: its ODS/VCSE identifier, else Organization/<id>."""
    identifier = reference.get("identifier") or {}
    if identifier.get("system") in RECIPIENT_SYSTEMS and identifier.get("value"):
        return str(identifier["value"])
    match = _ORGANIZATION_REF.search(str(reference.get("reference") or ""))
    return match.group(1) if match else None


def _allows_disclose(provision: dict[str, Any]) -> bool:
    """provision.action, when present, must include consentaction#disclose."""
    actions = provision.get("action")
    if not actions:
        return True
    return any(
        c.get("system") == CONSENT_ACTION and c.get("code") == DISCLOSE
        for concept in actions for c in (concept or {}).get("coding") or []
    )


def _covers_purpose(provision: dict[str, Any], purpose: str) -> bool:
    """provision.purpose (a list of Coding), when present, must include the v3-ActReason purpose."""
    purposes = provision.get("purpose")
    if not purposes:
        return True
    return any(p.get("system") == PURPOSE_SYSTEM and p.get("code") == purpose for p in purposes)


def _period_state(period: dict[str, Any] | None, now: datetime) -> bool | None:
    """True if now is in [start, end), False if clearly not, None if a bound cannot be read."""
    if not period:
        return True
    start, end = period.get("start"), period.get("end")
    if start is not None:
        span = _span(start)
        if span is None:
            return None
        if now < span[0]:
            return False
    if end is not None:
        span = _span(end)
        if span is None:
            return None
        if now >= span[1]:
            return False
    return True


def _span(value: Any) -> tuple[datetime, datetime] | None:
    """Returns [first instant, instant after the last) a FHIR date or dateTime covers, in UTC.

    A date-only value (YYYY, YYYY-MM, YYYY-MM-DD) covers the whole year, month or day in UTC; a
    dateTime with a time must carry a zone (FHIR dateTime) and covers that instant.
    """
    if not isinstance(value, str):
        return None
    partial = _PARTIAL_DATE.match(value)
    if partial:
        year, month, day = partial.groups()
        try:
            first = date(int(year), int(month or 1), int(day or 1))
            if day:
                after = first + timedelta(days=1)
            elif month:
                after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            else:
                after = date(first.year + 1, 1, 1)
        except ValueError:
            return None
        return _midnight(first), _midnight(after)
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        return None
    if instant.tzinfo is None:
        return None
    return instant, instant


def _order(consent: dict[str, Any], kind: Kind) -> tuple[datetime, datetime, int]:
    """Sort key: Consent.dateTime, then meta.lastUpdated; at the same instant a deny comes last.

    A Consent we cannot place in time counts as the oldest if it permits and the newest if it
    refuses, so doubt never turns into a disclosure.
    """
    unknown = _LATEST if kind == "deny" else _EARLIEST
    recorded = _span(consent.get("dateTime"))
    updated = _span((consent.get("meta") or {}).get("lastUpdated"))
    primary = recorded[0] if recorded else updated[0] if updated else unknown
    secondary = updated[0] if updated else unknown
    return primary, secondary, 1 if kind == "deny" else 0


def _provision(consent: dict[str, Any]) -> dict[str, Any]:
    provision = consent.get("provision")
    return provision if isinstance(provision, dict) else {}


def _label(consent: dict[str, Any]) -> str:
    return f"Consent/{consent['id']}" if consent.get("id") else "a Consent without id"


def _listed(categories: Collection[str]) -> str:
    return ", ".join(sorted(categories))


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _requested(categories: Collection[str]) -> frozenset[str]:
    requested = frozenset(categories)
    unknown = requested - ALL_CATEGORIES
    if unknown:
        raise ValueError(f"unknown data categories: {_listed(unknown)}")
    return requested


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
