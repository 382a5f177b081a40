"""The per-patient disclosure report: IG rule 5's one query, "who has received what about this
patient, when and on what basis?", answered from the audit log alone.

Three sections, each in the order the log recorded them:
- disclosures: every PrivacyDisclosure (DCM 110106) for the patient: when, to which
  organisation, exactly which packet fields, on which Consent, which packet and referral,
  and how it left (webhook delivery, or pulled by the host through the VCSE API);
- consent decisions: every AuthZ-Consent decision (DCM 110113) the gateway made before a
  disclosure, permit or deny, with its reason (a withdrawal shows up here as a deny);
- consent records: each time a Consent for the patient was recorded or changed.
Entries whose content was archived are counted with the segments that hold them.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from sqlmodel import Session, select

from audit.events import DATA_CATEGORY, DCM, DISCLOSED_FIELD, LOCAL_CLIENT_ID, LOCAL_PACKET_ID, RESOURCE_TYPES
from audit.store import AuditEntry

DISCLOSURE_TYPE = "110106"  # DCM Export (BALP PrivacyDisclosure)
CONSENT_DECISION_TYPE = "110113"  # DCM Security Alert, subtype AuthZ-Consent
RECIPIENT_ROLE = "110152"  # DCM Destination Role ID
CONSENT_CHANGES = ("create", "update")
# How a packet left: the role of the client that made the disclosure happen.
HOW_BY_ROLE = {"vcse": "pulled by the host", "system": "webhook delivery"}

CSV_HEADER = (
    "When",
    "Record",
    "Recipient organisation id",
    "Recipient name",
    "What was disclosed",
    "Basis (Consent)",
    "Packet id",
    "Referral",
    "How",
    "Decision",
    "Reason",
    "Audit entry",
)


@dataclass(frozen=True)
class Disclosure:
    when: str
    recipient_org: str | None
    recipient_name: str | None
    fields: list[str]
    basis: str | None
    packet_id: str | None
    referral: str | None
    how: str
    outcome: str
    audit_entry: int


@dataclass(frozen=True)
class ConsentDecision:
    when: str
    recipient_org: str | None
    recipient_name: str | None
    decision: str
    basis: str | None
    reason: str | None
    categories: list[str]
    audit_entry: int


@dataclass(frozen=True)
class ConsentRecord:
    when: str
    consent: str | None
    change: str
    by_organisation: str | None
    audit_entry: int


@dataclass
class DisclosureReport:
    disclosures: list[Disclosure] = field(default_factory=list)
    consent_decisions: list[ConsentDecision] = field(default_factory=list)
    consent_records: list[ConsentRecord] = field(default_factory=list)
    archived_entries: int = 0
    archive_segments: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Returns the report as plain JSON-ready data."""
        return asdict(self)

    def to_csv(self) -> str:
        """Returns the report as one CSV table, a row per record, oldest first, with a header row."""
        rows: list[tuple[int, tuple[Any, ...]]] = []
        for d in self.disclosures:
            rows.append(
                (
                    d.audit_entry,
                    (d.when, "disclosure", d.recipient_org, d.recipient_name, "; ".join(d.fields), d.basis,
                     d.packet_id, d.referral, d.how, "", "", d.audit_entry),
                )
            )  # fmt: skip
        for c in self.consent_decisions:
            rows.append(
                (
                    c.audit_entry,
                    (c.when, "consent decision", c.recipient_org, c.recipient_name, "", c.basis, "", "", "",
                     c.decision, c.reason, c.audit_entry),
                )
            )  # fmt: skip
        for r in self.consent_records:
            rows.append(
                (
                    r.audit_entry,
                    (r.when, "consent record", r.by_organisation, "", "", r.consent, "", "", "", "", r.change,
                     r.audit_entry),
                )
            )  # fmt: skip
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_HEADER)
        writer.writerows(row for _, row in sorted(rows, key=lambda item: item[0]))
        return buffer.getvalue()


def _items(value: Any) -> list[Any]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _codes(concept: Any) -> set[tuple[Any, Any]]:
    if not isinstance(concept, dict):
        return set()
    return {(c.get("system"), c.get("code")) for c in _items(concept.get("coding"))}


def _recipient(event: dict[str, Any]) -> str | None:
    for agent in _items(event.get("agent")):
        if (DCM, RECIPIENT_ROLE) in _codes(agent.get("type")):
            identifier = (agent.get("who") or {}).get("identifier") or {}
            return identifier.get("value")
    return None


def _how(event: dict[str, Any]) -> str:
    for agent in _items(event.get("agent")):
        identifier = (agent.get("who") or {}).get("identifier") or {}
        if not agent.get("requestor") or identifier.get("system") != LOCAL_CLIENT_ID:
            continue
        roles = {code for role in _items(agent.get("role")) for _, code in _codes(role)}
        for role, how in HOW_BY_ROLE.items():
            if role in roles:
                return how
        return f"released to client {identifier.get('value')}"
    return "not recorded"


def _details(entity: dict[str, Any], detail_type: str) -> list[str]:
    return [d["valueString"] for d in _items(entity.get("detail")) if d.get("type") == detail_type]


def _consent_basis(event: dict[str, Any]) -> tuple[str | None, list[str]]:
    for entity in _items(event.get("entity")):
        if entity.get("type", {}).get("system") == RESOURCE_TYPES and entity.get("type", {}).get("code") == "Consent":
            what = entity.get("what") or {}
            return what.get("reference") or what.get("display"), _details(entity, DATA_CATEGORY)
    return None, []


def _disclosure(seq: int, event: dict[str, Any], names: Mapping[str, str]) -> Disclosure:
    fields: list[str] = []
    packet_id = referral = None
    for entity in _items(event.get("entity")):
        what = entity.get("what") or {}
        identifier = what.get("identifier") or {}
        if identifier.get("system") == LOCAL_PACKET_ID:
            packet_id = identifier.get("value")
            fields = _details(entity, DISCLOSED_FIELD)
        elif str(what.get("reference", "")).startswith("ServiceRequest/"):
            referral = what["reference"]
    recipient = _recipient(event)
    return Disclosure(
        when=event.get("recorded", ""),
        recipient_org=recipient,
        recipient_name=names.get(recipient or ""),
        fields=fields,
        basis=_consent_basis(event)[0],
        packet_id=packet_id,
        referral=referral,
        how=_how(event),
        outcome=event.get("outcome", ""),
        audit_entry=seq,
    )


def _decision(seq: int, event: dict[str, Any], names: Mapping[str, str]) -> ConsentDecision:
    recipient = _recipient(event)
    basis, categories = _consent_basis(event)
    return ConsentDecision(
        when=event.get("recorded", ""),
        recipient_org=recipient,
        recipient_name=names.get(recipient or ""),
        decision="permit" if event.get("outcome") == "0" else "deny",
        basis=basis,
        reason=event.get("outcomeDesc"),
        categories=categories,
        audit_entry=seq,
    )


def _consent_record(seq: int, event: dict[str, Any], agent_orgs: str) -> ConsentRecord:
    consent = next(
        (
            e["what"]["reference"]
            for e in _items(event.get("entity"))
            if str((e.get("what") or {}).get("reference", "")).startswith("Consent/")
        ),
        None,
    )
    return ConsentRecord(
        when=event.get("recorded", ""),
        consent=consent,
        change=event.get("outcomeDesc") or "",
        by_organisation=agent_orgs.split(" ")[0] if agent_orgs else None,
        audit_entry=seq,
    )


def _rows(session: Session, nhs: str) -> Iterable[Any]:
    consent_change = (
        (AuditEntry.type_code == "rest")
        & AuditEntry.subtype_code.in_(CONSENT_CHANGES)  # type: ignore[union-attr]
        & AuditEntry.entity_refs.like("%Consent/%")  # type: ignore[attr-defined]
    )
    wanted = AuditEntry.type_code.in_((DISCLOSURE_TYPE, CONSENT_DECISION_TYPE)) | consent_change  # type: ignore[attr-defined]
    query = (
        select(AuditEntry.seq, AuditEntry.type_code, AuditEntry.content, AuditEntry.archived_in, AuditEntry.agent_orgs)
        .where(AuditEntry.patient_nhs == nhs, wanted)
        .order_by(AuditEntry.seq)  # type: ignore[arg-type]
    )
    return session.exec(query)  # type: ignore[call-overload]


REACCESS = re.compile(r"^re-access by (?P<host>\S+) of packet (?P<packet>\S+), ")


@dataclass(frozen=True)
class Reaccess:
    """A host's reads of a packet version it already held (BALP read events, not disclosures)."""

    count: int
    last: str


def reaccesses(session: Session, nhs: str) -> dict[tuple[str, str], Reaccess]:
    """Returns {(host, packet_id): its re-access reads} for the patient with this NHS number."""
    query = (
        select(AuditEntry.content)
        .where(AuditEntry.patient_nhs == nhs, AuditEntry.type_code == "rest", AuditEntry.action == "R")
        .order_by(AuditEntry.seq)  # type: ignore[arg-type]
    )
    found: dict[tuple[str, str], Reaccess] = {}
    for content in session.exec(query):  # type: ignore[call-overload]
        if content is None:
            continue
        event = orjson.loads(content)
        match = REACCESS.match(event.get("outcomeDesc") or "")
        if match:
            key = (match["host"], match["packet"])
            seen = found.get(key)
            found[key] = Reaccess((seen.count if seen else 0) + 1, event.get("recorded", ""))
    return found


def disclosure_report(session: Session, nhs: str, *, organisation_names: Mapping[str, str]) -> DisclosureReport:
    """Returns who received what about the patient with this NHS number, when and on what basis."""
    report = DisclosureReport()
    segments: set[str] = set()
    for seq, type_code, content, archived_in, agent_orgs in _rows(session, nhs):
        if content is None:
            report.archived_entries += 1
            if archived_in:
                segments.add(archived_in)
            continue
        event = orjson.loads(content)
        if type_code == DISCLOSURE_TYPE:
            report.disclosures.append(_disclosure(seq, event, organisation_names))
        elif type_code == CONSENT_DECISION_TYPE:
            report.consent_decisions.append(_decision(seq, event, organisation_names))
        else:
            report.consent_records.append(_consent_record(seq, event, agent_orgs))
    report.archive_segments = sorted(segments)
    return report
