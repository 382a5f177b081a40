"""Monthly counts from the audit log, for the IG console's charts.

Disclosures per recipient per month: successful PrivacyDisclosure entries (DCM 110106), each
packet counted once per recipient, in the month it was first disclosed. A host's CRM polling the
same packet again and again is one disclosure, not one per poll. Months are given by the caller's
`month_of` (the console uses UK local months).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from audit.events import LOCAL_PACKET_ID
from audit.store import AuditEntry

DISCLOSURE_TYPE = "110106"


def _packet(entity_refs: str) -> str | None:
    prefix = LOCAL_PACKET_ID + "|"
    return next((ref[len(prefix) :] for ref in entity_refs.split(" ") if ref.startswith(prefix)), None)


def disclosures_per_recipient_month(session: Session, month_of: Callable[[datetime], str]) -> Counter[tuple[str, str]]:
    """Returns {(month, recipient organisation id): packets first disclosed to it that month}."""
    query = (
        select(AuditEntry.seq, AuditEntry.recorded, AuditEntry.recipient_org, AuditEntry.entity_refs)
        .where(AuditEntry.type_code == DISCLOSURE_TYPE, AuditEntry.outcome == "0")
        .order_by(AuditEntry.seq)  # type: ignore[arg-type]
    )
    counts: Counter[tuple[str, str]] = Counter()
    seen: set[tuple[str, str]] = set()
    for seq, recorded, recipient, refs in session.execute(query):
        recipient = recipient or "unknown"
        packet = _packet(refs) or f"entry-{seq}"  # an entry naming no packet counts on its own
        if (recipient, packet) in seen:
            continue
        seen.add((recipient, packet))
        counts[(month_of(recorded), recipient)] += 1
    return counts
