"""A patient's timeline in plain English: referrals, disclosures, consents given or withdrawn, and
recall and cease notices, oldest first, in UK local time, organisations by name.

`load_timeline` reads (the audit log's disclosure report, the Consent resources, the referrals and
notices); everything after it is pure. An IG officer's look-up is organisation-wide by design (the
IG officer answers for the whole gateway), as in the IG API's disclosure report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlmodel import Session, select

from audit.reports import Disclosure, Reaccess, disclosure_report, reaccesses
from gateway.models import FhirResource, OutboxMessage, Packet, Referral, utc
from gateway.organisations import list_organisations
from mappings.packet import NOTICE_REASONS

UK = ZoneInfo("Europe/London")

# Packet fields (mappings/packet.py FIELDS) in the words a patient would use.
FIELD_WORDS: dict[str, str] = {
    "person.first_name": "first name",
    "person.preferred_name": "preferred name",
    "person.contact_routes": "phone number or email address",
    "person.preferred_contact_time": "best time to contact",
    "person.language": "preferred language",
    "person.interpreter_required": "whether an interpreter is needed",
    "person.accessibility_needs": "accessibility needs",
    "person.nhs_number": "NHS number",
    "person.date_of_birth": "date of birth",
    "person.address": "address",
    "person.gender": "gender",
    "referral.need_categories": "the kind of help asked for",
    "referral.reason_text": "the GP's reason in their own words",
    "referral.priority": "how urgent the referral is",
    "referral.what_matters_to_me": "what matters to the person",
    "referral.safeguarding_concern": "whether there is a safeguarding concern",
}
# UK GDPR: social prescribing by the NHS is a public task with health and social care as the condition;
# a Consent whose policy names consent as the lawful basis (Art. 6(1)(a) / 9(2)(a)) says so instead.
PUBLIC_TASK_BASIS = "UK GDPR Article 6(1)(e) (public task) and Article 9(2)(h) (health or social care)"
CONSENT_BASIS = "UK GDPR Article 6(1)(a) and Article 9(2)(a) (explicit consent)"
CONSENT_BASIS_MARKERS = ("6(1)(a)", "9(2)(a)", "6-1-a", "9-2-a")


# v3-ActReason purposes and notice reason codes, in words.
PURPOSE_WORDS = {"TREAT": "care and support for the person", "HPAYMT": "paying for care", "HRESCH": "research"}


def field_words(path: str) -> str:
    return FIELD_WORDS.get(path, path.split(".")[-1].replace("_", " "))


def uk_time(value: datetime | str | None) -> str:
    """'21 November 2026 at 9:00am (GMT)': UK local time, as the patient lived it."""
    if value is None or value == "":
        return "unknown time"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    local = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UK)
    hour = local.strftime("%I").lstrip("0")
    return (
        f"{local.day} {local:%B %Y} at {hour}:{local:%M}{local:%p}".replace("AM", "am").replace("PM", "pm")
        + f" ({local.tzname()})"
    )


@dataclass
class Entry:
    """One row of the timeline."""

    when: datetime
    kind: str  # referral | disclosure | consent-given | consent-withdrawn | recall | cease
    title: str
    details: list[tuple[str, str]] = field(default_factory=list)
    audit_entries: list[int] = field(default_factory=list)

    @property
    def when_uk(self) -> str:
        return uk_time(self.when)


@dataclass
class Timeline:
    nhs_number: str
    entries: list[Entry]
    archived_entries: int = 0

    @property
    def disclosures(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == "disclosure"]


@dataclass(frozen=True)
class ConsentFacts:
    consent_id: str
    when: datetime
    permit: bool
    organisations: list[str]
    recorded_by: str
    purposes: list[str]
    categories: list[str]
    consent_based: bool


@dataclass(frozen=True)
class NoticeFacts:
    kind: str
    recipient: str
    created: datetime
    reason: str
    delivery: str  # plain words: how it reached (or is waiting for) the host


@dataclass(frozen=True)
class ReferralFacts:
    referral_id: str
    created: datetime
    referrer: str
    recipient: str | None


def _parse_time(value: str | None, fallback: datetime) -> datetime:
    if not value:
        return fallback
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return fallback
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def consent_facts(resource_id: str, tenant: str, consent: dict[str, Any], stored: datetime) -> ConsentFacts:
    """Returns what a Consent says, in the terms the timeline needs (R4 Consent.provision)."""
    provision = consent.get("provision") or {}
    orgs = [
        str(((actor.get("reference") or {}).get("identifier") or {}).get("value", ""))
        for actor in provision.get("actor") or []
    ]
    policy = orjson.dumps([consent.get("policy"), consent.get("policyRule")]).decode()
    return ConsentFacts(
        consent_id=resource_id,
        when=_parse_time(consent.get("dateTime"), stored),
        permit=provision.get("type", "permit") == "permit" and consent.get("status") == "active",
        organisations=[o for o in orgs if o],
        recorded_by=tenant,
        purposes=[
            PURPOSE_WORDS.get(p.get("code", ""), p.get("display") or p.get("code", ""))
            for p in provision.get("purpose") or []
        ],
        categories=[
            c.get("display") or c.get("code", "")
            for code in provision.get("code") or []
            for c in code.get("coding") or []
        ],
        consent_based=any(marker in policy for marker in CONSENT_BASIS_MARKERS),
    )


def _name(names: Mapping[str, str], org: str | None) -> str:
    return names.get(org or "", org or "an unknown organisation")


def _list_words(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _consent_entry(c: ConsentFacts, names: Mapping[str, str]) -> Entry:
    who = _list_words([_name(names, o) for o in c.organisations]) or "the organisations named in it"
    details = [
        ("Recorded by", _name(names, c.recorded_by)),
        ("Scope", _list_words(c.categories) or "the referral and the details needed to contact the person"),
        ("Purpose", _list_words(c.purposes) or "social prescribing"),
        ("Lawful basis", CONSENT_BASIS if c.consent_based else PUBLIC_TASK_BASIS),
        ("Consent record", f"Consent/{c.consent_id}"),
    ]
    if c.permit:
        return Entry(c.when, "consent-given", f"Agreed to share their referral with {who}", details)
    return Entry(c.when, "consent-withdrawn", f"Withdrew consent to share with {who}", details)


def _consent_label(basis: str | None, consents: Mapping[str, ConsentFacts], names: Mapping[str, str]) -> str:
    if not basis:
        return "not recorded"
    consent = consents.get(basis.removeprefix("Consent/"))
    if consent is None:
        return basis
    return f"the consent recorded by {_name(names, consent.recorded_by)} on {uk_time(consent.when)}"


def _disclosure_entries(
    disclosures: list[Disclosure],
    consents: Mapping[str, ConsentFacts],
    names: Mapping[str, str],
    reads_again: Mapping[tuple[str, str], Reaccess] | None = None,
) -> list[Entry]:
    """One entry per disclosure event; re-reads of the same packet (same version: same fields, same basis) by
    the same host are grouped with a count rather than listed one per poll: older logs record them as
    repeated disclosures, the gateway now as re-access reads (`reads_again`)."""
    reads_again = reads_again or {}
    groups: dict[tuple[Any, ...], list[Disclosure]] = {}
    for d in disclosures:
        key = (d.recipient_org, d.packet_id, tuple(d.fields), d.basis)
        groups.setdefault(key, []).append(d)
    entries = []
    for reads in groups.values():
        first, last = reads[0], reads[-1]
        host = first.recipient_name or _name(names, first.recipient_org)
        details = [
            ("Shared with", host),
            ("What was shared", _list_words([field_words(f) for f in first.fields]) or "no personal details"),
            ("Under", _consent_label(first.basis, consents, names)),
            ("Data-sharing agreement", f"the agreement registered for {host}"),
            ("How", first.how),
        ]
        again = reads_again.get((first.recipient_org or "", first.packet_id or ""))
        more = len(reads) - 1 + (again.count if again else 0)
        if more:
            latest = again.last if again and again.last > last.when else last.when
            details.append(("Read again", f"{more} more times, last on {uk_time(latest)}"))
        entries.append(
            Entry(
                _parse_time(first.when, datetime.now(UTC)),
                "disclosure",
                f"Referral details shared with {host}",
                details,
                [d.audit_entry for d in reads],
            )
        )
    return entries


def _notice_entry(n: NoticeFacts, names: Mapping[str, str]) -> Entry:
    host = _name(names, n.recipient)
    what = "Cease notice" if n.kind == "cease" else "Recall notice"
    meaning = (
        "tells the host to stop using the person's details"
        if n.kind == "cease"
        else "tells the host the referral was withdrawn"
    )
    return Entry(
        n.created,
        n.kind,
        f"{what} sent to {host}",
        [
            ("What it means", meaning),
            ("Reason", NOTICE_REASONS.get(n.kind, {}).get(n.reason, n.reason) or "not given"),
            ("Delivered", n.delivery),
        ],
    )


def build(
    nhs: str,
    *,
    referrals: list[ReferralFacts],
    disclosures: list[Disclosure],
    consents: list[ConsentFacts],
    notices: list[NoticeFacts],
    names: Mapping[str, str],
    archived_entries: int = 0,
    reads_again: Mapping[tuple[str, str], Reaccess] | None = None,
) -> Timeline:
    """Returns the timeline, oldest first."""
    by_id = {c.consent_id: c for c in consents}
    entries = [
        Entry(
            r.created,
            "referral",
            f"Referred by {_name(names, r.referrer)}" + (f" to {_name(names, r.recipient)}" if r.recipient else ""),
            [("Referral", r.referral_id)],
        )
        for r in referrals
    ]
    entries += _disclosure_entries(disclosures, by_id, names, reads_again)
    entries += [_consent_entry(c, names) for c in consents]
    entries += [_notice_entry(n, names) for n in notices]
    entries.sort(key=lambda e: e.when)
    return Timeline(nhs, entries, archived_entries)


def _delivery(session: Session, packet: Packet, webhook: bool) -> str:
    if not webhook:
        return "waiting for the host to collect it through the gateway's VCSE API"
    row = session.exec(select(OutboxMessage).where(OutboxMessage.dedup_key.contains(packet.packet_id))).first()  # type: ignore[attr-defined]
    if row is None:
        return "not queued"
    if row.status == "delivered" and row.delivered_at:
        return f"delivered on {uk_time(utc(row.delivered_at))}"
    if row.status == "dead":
        return f"could not be delivered after {row.attempts} attempts"
    return f"not delivered yet ({row.attempts} attempts so far)"


def load_timeline(session: Session, nhs: str) -> Timeline:
    """Reads everything the timeline shows for the patient with this NHS number."""
    orgs = list_organisations(session)
    names = {o.id: o.name for o in orgs}
    webhook = {o.id for o in orgs if o.delivery_mode == "webhook" and o.webhook_url}
    report = disclosure_report(session, nhs, organisation_names=names)
    rows = session.exec(select(Referral).where(Referral.patient_nhs == nhs).order_by(Referral.created)).all()  # type: ignore[arg-type]
    referrals = [ReferralFacts(r.referral_id, utc(r.created), r.tenant, r.recipient) for r in rows]  # type: ignore[arg-type]
    consents = [
        consent_facts(r.id, r.tenant, orjson.loads(r.content), utc(r.last_updated))  # type: ignore[arg-type]
        for r in session.exec(
            select(FhirResource).where(FhirResource.resource_type == "Consent", FhirResource.patient_nhs == nhs)
        )
    ]
    referral_ids = [r.referral_id for r in rows]
    packets = session.exec(
        select(Packet).where(Packet.referral_id.in_(referral_ids), Packet.kind.in_(("recall", "cease")))  # type: ignore[attr-defined]
    ).all()
    notices = [
        NoticeFacts(
            p.kind,
            p.recipient,
            utc(p.created),  # type: ignore[arg-type]
            str(p.body.get("reason") or ""),
            _delivery(session, p, p.recipient in webhook),
        )
        for p in packets
    ]
    return build(
        nhs,
        referrals=referrals,
        disclosures=report.disclosures,
        consents=consents,
        notices=notices,
        names=names,
        archived_entries=report.archived_entries,
        reads_again=reaccesses(session, nhs),
    )
