"""`spgw audit ...`: the IG officer's commands for the audit log.

    verify        check every entry, the head, and optionally a checkpoint and archive segments
    checkpoint    sign the tree as it stands (the note to hand a third party)
    verifier-key  the public key a third party checks checkpoints with
    prove         an RFC 9162 inclusion proof of one entry (JSON)
    export        entries recorded in a date window, as NDJSON or CSV
    archive       move the content of old entries into signed segment files (retention)

Exit codes of `verify`: 0 the log is intact; 1 the log is at fault (the first entry at fault
is named); 2 there is nothing to verify (no database in the data folder, or a log with no
entries), or the checkpoint, verifier key, segments or witness could not be used. Without `--checkpoint`, the
newest checkpoint in the witness folder (SPGW_WITNESS_DIR) is checked, when there is one.
"""

from __future__ import annotations

import getpass
import json
import sys
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from audit.checkpoint import Checkpoint, CheckpointError, load_verifier_key, parse_and_verify
from audit.events import AuditContext
from gateway.cli.common import data_dir_option, load_settings, open_engine

DATE = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"])
EXIT_AT_FAULT = 1
EXIT_BAD_INPUT = 2


def _operator() -> AuditContext:
    """Who ran the command, as the audit records it (the command line and the OS user)."""
    return AuditContext(client_id="spgw-cli", user=getpass.getuser())


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _bad_input(message: str) -> None:
    click.echo(f"cannot verify: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _open_existing(data_dir: Path | None):  # type: ignore[no-untyped-def]
    """The engine and settings of a data folder that already holds a gateway database; exit 2 otherwise.
    (`open_engine` would create an empty database, and an empty log must not look verified.)"""
    from sqlalchemy import inspect

    from gateway.db import make_engine
    from gateway.schema import init_db

    settings = load_settings(data_dir)
    if settings.database_url is None and not (settings.data_dir / "spgw.db").is_file():
        _bad_input(f"there is no database in {settings.data_dir} (no spgw.db): check --data-dir or SPGW_DATA_DIR")
    engine = make_engine(settings)
    if not inspect(engine).has_table("audit_head"):
        engine.dispose()
        _bad_input("the database has no audit log: check --data-dir, SPGW_DATA_DIR or SPGW_DATABASE_URL")
    init_db(engine)
    return engine, settings


@click.group()
def audit() -> None:
    """Verify, checkpoint, prove, export and archive the audit log."""


@audit.command()
@data_dir_option
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A signed checkpoint note kept earlier; the log must extend it",
)
@click.option(
    "--verifier-key",
    default=None,
    help="The verifier key (a file, or the key string) that checkpoints and segments are signed with; "
    "default: the key in the data folder",
)
@click.option(
    "--segments",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder of archive segments: check archived entries against their leaf hashes",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON")
def verify(
    data_dir: Path | None,
    checkpoint_file: Path | None,
    verifier_key: str | None,
    segments: Path | None,
    as_json: bool,
) -> None:
    """Check the whole audit log; name the first entry at fault."""
    from dataclasses import asdict

    from audit.retention import check_segments
    from audit.verify import verify_log
    from audit.witness import WitnessError
    from audit.witness import latest as witnessed
    from gateway.integrity import audit_signer

    engine, settings = _open_existing(data_dir)
    try:
        checkpoint: Checkpoint | None = None
        witness_note: Path | None = None
        text = verifier_key or audit_signer(settings).verifier_key()
        path = Path(text)
        try:
            key = load_verifier_key(path.read_text() if path.is_file() else text)
        except CheckpointError as exc:
            _bad_input(f"verifier key: {exc}")
        if checkpoint_file is None:
            try:
                found = witnessed(settings.witness_folder, *key)
            except WitnessError as exc:
                _bad_input(str(exc))
            if found is not None:
                checkpoint, witness_note = found.checkpoint, found.path
        if checkpoint_file is not None:
            try:
                checkpoint = parse_and_verify(checkpoint_file.read_text(), *key)
            except CheckpointError as exc:
                _bad_input(f"checkpoint {checkpoint_file.name}: {exc}")
            assert checkpoint is not None
            if checkpoint.origin != settings.audit_origin:
                _bad_input(f"the checkpoint is for the log '{checkpoint.origin}', not '{settings.audit_origin}'")
        if segments is not None:
            problems = check_segments(segments, key)
            if problems:
                _bad_input("; ".join(problems))
        report = verify_log(engine, checkpoint=checkpoint, segments_dir=segments)
    finally:
        engine.dispose()
    if report.ok and report.size == 0:
        _bad_input("the audit log has no entries: is this the gateway's database? (nothing was verified)")
    click.echo(json.dumps(asdict(report), indent=2) if as_json else report.summary())
    if witness_note is not None and not as_json:
        click.echo(f"checked against the witness checkpoint {witness_note}")
    if not report.ok:
        sys.exit(EXIT_AT_FAULT)


@audit.command()
@data_dir_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the note here")
@click.option("--publish", is_flag=True, help="Also publish it to the witness folder (and SPGW_WITNESS_URL)")
def checkpoint(data_dir: Path | None, out: Path | None, publish: bool) -> None:
    """Sign the log's tree as it stands and print the checkpoint note."""
    from audit.proofs import make_checkpoint
    from audit.witness import WitnessError, checkpoint_and_publish
    from gateway.integrity import audit_signer

    engine, settings = open_engine(data_dir)
    signer = audit_signer(settings)
    try:
        if publish:
            done = checkpoint_and_publish(
                engine, signer, settings.witness_folder, settings.witness_url, ctx=_operator(), force=True
            )
            assert done is not None
            note = done[0]
        else:
            note = make_checkpoint(engine, signer, ctx=_operator())
    except WitnessError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    if out is not None:
        out.write_text(note)
    click.echo(note, nl=False)


@audit.command("verifier-key")
@data_dir_option
def verifier_key_command(data_dir: Path | None) -> None:
    """Print the public verifier key for this gateway's checkpoints."""
    from gateway.integrity import audit_signer

    engine, settings = open_engine(data_dir)
    engine.dispose()
    click.echo(audit_signer(settings).verifier_key())


@audit.command()
@click.argument("seq", type=click.IntRange(min=0))
@click.option("--size", type=click.IntRange(min=1), default=None, help="Tree size (default: the whole log)")
@data_dir_option
def prove(seq: int, size: int | None, data_dir: Path | None) -> None:
    """Print an RFC 9162 inclusion proof of entry SEQ as JSON."""
    from audit.proofs import ProofError
    from audit.proofs import prove as prove_entry

    engine, _ = open_engine(data_dir)
    try:
        proof = prove_entry(engine, seq, size=size)
    except ProofError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(json.dumps(proof, indent=2))


@audit.command()
@click.option("--from", "start", type=DATE, required=True, help="First day (or moment, UTC) to include")
@click.option("--to", "end", type=DATE, required=True, help="Last day to include (a moment: up to, not including)")
@click.option("--format", "fmt", type=click.Choice(["ndjson", "csv"]), default="ndjson", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Default: standard output")
@data_dir_option
def export(start: datetime, end: datetime, fmt: str, out: Path | None, data_dir: Path | None) -> None:
    """Export the entries recorded between two dates (UTC)."""
    from audit.export import export as export_entries

    if end == end.replace(hour=0, minute=0, second=0, microsecond=0):
        end = end + timedelta(days=1)  # a plain date means the whole of that day
    engine, _ = open_engine(data_dir)
    try:
        target = out.open("w", newline="") if out else nullcontext(click.get_text_stream("stdout"))
        with target as stream:
            result = export_entries(engine, stream, start=_utc(start), end=_utc(end), fmt=fmt, ctx=_operator())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    left_out = f"; {result.archived_left_out} archived entries left out" if result.archived_left_out else ""
    click.echo(f"exported {result.written} entries{left_out}", err=True)


@audit.command()
@click.option("--before", type=DATE, default=None, help="Archive entries recorded before this (default: retention)")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Segment folder")
@data_dir_option
def archive(before: datetime | None, out: Path, data_dir: Path | None) -> None:
    """Move the content of old entries into a signed segment file; leaf hashes stay."""
    from audit.retention import ArchiveError
    from audit.retention import archive as archive_entries
    from gateway.integrity import audit_signer

    engine, settings = open_engine(data_dir)
    try:
        result = archive_entries(
            engine,
            settings,
            audit_signer(settings),
            out_dir=out,
            before=_utc(before) if before else None,
            ctx=_operator(),
        )
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    if result.segment is None:
        click.echo("nothing to archive")
        return
    click.echo(
        f"archived entries {result.first_seq}..{result.last_seq} ({result.count}) to {out / result.segment} "
        f"(sha256 {result.sha256}); signed note {result.segment}.note"
    )
