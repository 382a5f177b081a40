"""The subject access pack: the patient's timeline written for them, a verification statement and an
RFC 9162 inclusion proof for each disclosure, as a PDF (WeasyPrint) and as CSV.

The statement is made fresh for each pack: a checkpoint is signed over the log as it stands, the
whole log is verified against it, and each disclosure's entry is proved to be in that tree.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from audit.checkpoint import load_verifier_key, parse_and_verify
from audit.events import AuditContext
from audit.proofs import make_checkpoint, prove
from audit.verify import verify_log
from gateway.console.timeline import Timeline, uk_time
from gateway.console.web import HERE, templates
from gateway.integrity import audit_signer
from gateway.settings import Settings

CSS = HERE / "static" / "access-pack.css"


def format_nhs_number(nhs: str) -> str:
    """3-3-4 grouping, as the NHS prints it."""
    return f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"


@dataclass(frozen=True)
class Verification:
    verified_at: datetime
    ok: bool
    tree_size: int
    root: str
    checkpoint_size: int
    checkpoint_root: str
    checkpoint_note: str
    summary: str  # plain English, one paragraph

    @property
    def verified_uk(self) -> str:
        return uk_time(self.verified_at)


def verify_for_pack(engine: Engine, settings: Settings, who: AuditContext) -> Verification:
    """Signs a checkpoint now, verifies the whole log against it, and returns the statement."""
    signer = audit_signer(settings)
    note = make_checkpoint(engine, signer, ctx=who)
    name, public_key = load_verifier_key(signer.verifier_key())
    checkpoint = parse_and_verify(note, name, public_key)
    report = verify_log(engine, checkpoint=checkpoint)
    when = datetime.now(UTC)
    if report.ok:
        summary = (
            f"On {uk_time(when)} the gateway's audit log was checked from its first entry to its last: "
            f"{report.size} entries, none altered or missing (Merkle tree root {report.root}). It is consistent "
            f"with the signed checkpoint of {checkpoint.size} entries (root {checkpoint.root.hex()}), and each "
            "disclosure below is proved to be in that checkpoint's tree (appendix)."
        )
    else:
        summary = f"On {uk_time(when)} the audit log did NOT pass verification: {report.problem}"
    return Verification(
        when, report.ok, report.size, report.root, checkpoint.size, checkpoint.root.hex(), note, summary
    )


def proofs(engine: Engine, timeline: Timeline, verification: Verification) -> dict[int, dict[str, Any]]:
    """The inclusion proof of every disclosure's audit entry in the checkpoint's tree."""
    return {
        seq: prove(engine, seq, size=verification.checkpoint_size)
        for entry in timeline.disclosures
        for seq in entry.audit_entries
        if seq < verification.checkpoint_size
    }


def render_pdf(timeline: Timeline, verification: Verification, entry_proofs: dict[int, dict[str, Any]]) -> bytes:
    from weasyprint import CSS as WeasyCSS
    from weasyprint import HTML

    html = templates.get_template("access_pack.html").render(
        timeline=timeline,
        nhs=format_nhs_number(timeline.nhs_number),
        verification=verification,
        proofs=entry_proofs,
        made=uk_time(datetime.now(UTC)),
    )
    return HTML(string=html).write_pdf(stylesheets=[WeasyCSS(filename=str(CSS))])  # type: ignore[no-any-return]


CSV_HEADER = ("When (UK time)", "What happened", "Details", "Audit entries", "Inclusion proofs (JSON)")


def render_csv(timeline: Timeline, verification: Verification, entry_proofs: dict[int, dict[str, Any]]) -> str:
    """One row per timeline entry, then the verification statement; proofs as JSON in their rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("NHS number", format_nhs_number(timeline.nhs_number), "", "", ""))
    writer.writerow(CSV_HEADER)
    for entry in timeline.entries:
        entry_json = [entry_proofs[s] for s in entry.audit_entries if s in entry_proofs]
        writer.writerow(
            (
                entry.when_uk,
                entry.title,
                "; ".join(f"{label}: {value}" for label, value in entry.details),
                " ".join(str(s) for s in entry.audit_entries),
                json.dumps(entry_json) if entry_json else "",
            )
        )
    writer.writerow(())
    writer.writerow(("Verification", verification.summary, "", "", ""))
    writer.writerow(("Verified at", verification.verified_at.isoformat(), "", "", ""))
    writer.writerow(("Tree size", str(verification.tree_size), "Root", verification.root, ""))
    writer.writerow(
        ("Checkpoint size", str(verification.checkpoint_size), "Checkpoint root", verification.checkpoint_root, "")
    )
    writer.writerow(("Signed checkpoint", verification.checkpoint_note, "", "", ""))
    return out.getvalue()
