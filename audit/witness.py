"""Keeping signed checkpoints outside the database, so that a rewrite of the whole database is caught.

Every per-entry check in `verify_log` can be passed by someone who rewrites the database
wholesale (entries, leaf hashes, head and checkpoint table together). A checkpoint kept
somewhere they cannot also rewrite cannot: the first `size` leaves of the rewritten log no
longer hash to its root. The witness is a folder (ideally another disk or host mount) and,
optionally, an HTTPS endpoint that receives each note by POST:

    <witness folder>/checkpoint-<size>.note   every note published, never overwritten
    <witness folder>/latest.note              the newest, replaced atomically

A checkpoint is signed only when the log grew since the last one (beyond the entry that
records that signing), so an idle log does not fill the witness with copies of itself.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine, func, select

from audit.checkpoint import Checkpoint, CheckpointError, Signer, parse_and_verify
from audit.events import AuditContext
from audit.proofs import make_checkpoint
from audit.snapshot import head_size, read_snapshot
from audit.store import AuditCheckpointRecord

LATEST = "latest.note"
_NOTE_NAME = re.compile(r"\Acheckpoint-(0|[1-9][0-9]*)\.note\Z")
POST_TIMEOUT = 10.0


class WitnessError(RuntimeError):
    """The witness could not be written to or read from (the message says where and why)."""


@dataclass(frozen=True)
class Witnessed:
    """The newest checkpoint the witness holds, signature-checked, and the file it came from."""

    checkpoint: Checkpoint
    path: Path


def check_url(url: str) -> None:
    """Raises WitnessError unless `url` is https (plain http only to a loopback address, for tests)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise WitnessError(f"the witness endpoint must be https:// (got {parts.scheme or 'no'} scheme)")


def _write_atomically(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".note")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish(note: str, size: int, folder: Path, url: str | None = None, http: httpx.Client | None = None) -> Path:
    """Writes the note to the witness folder (and POSTs it to `url`); returns the note's file.

    Raises WitnessError when the folder cannot be written or the endpoint does not answer 2xx.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"checkpoint-{size}.note"
        if not path.exists():
            _write_atomically(path, note)
        _write_atomically(folder / LATEST, note)
    except OSError as exc:
        raise WitnessError(f"cannot write to the witness folder {folder}: {exc.strerror or exc}") from None
    if url:
        check_url(url)
        client = http or httpx.Client(timeout=POST_TIMEOUT)
        try:
            response = client.post(url, content=note.encode(), headers={"Content-Type": "text/plain; charset=utf-8"})
        except httpx.HTTPError as exc:
            raise WitnessError(f"the witness endpoint did not answer: {type(exc).__name__}") from None
        finally:
            if http is None:
                client.close()
        if not response.is_success:
            raise WitnessError(f"the witness endpoint answered HTTP {response.status_code}")
    return path


def latest(folder: Path, key_name: str, public_key: Ed25519PublicKey) -> Witnessed | None:
    """Returns the newest signature-checked checkpoint in the witness folder, or None if it holds none.

    Raises WitnessError when a note there is unreadable or not signed by this gateway's key: a
    witness that cannot be read must not look like one that is empty.
    """
    if not folder.is_dir():
        return None
    notes = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _NOTE_NAME.match(p.name)) is not None)
    if not notes:
        return None
    path = notes[-1][1]
    try:
        checkpoint = parse_and_verify(path.read_text(encoding="utf-8"), key_name, public_key)
    except (OSError, UnicodeDecodeError, CheckpointError) as exc:
        raise WitnessError(f"the witness note {path.name} cannot be used: {exc}") from None
    return Witnessed(checkpoint, path)


def checkpoint_due(engine: Engine) -> bool:
    """True when the log holds more than the last checkpoint and the entry recording its signing."""
    with read_snapshot(engine) as conn:
        size = head_size(conn)
        last = conn.execute(select(func.max(AuditCheckpointRecord.size))).scalar()
    return size > 0 and (last is None or size > int(last) + 1)


def checkpoint_and_publish(
    engine: Engine,
    signer: Signer,
    folder: Path,
    url: str | None = None,
    *,
    ctx: AuditContext | None = None,
    force: bool = False,
) -> tuple[str, Path] | None:
    """Signs a checkpoint when one is due (or `force`) and publishes it; returns (note, file) or None."""
    if not force and not checkpoint_due(engine):
        return None
    note = make_checkpoint(engine, signer, ctx=ctx)
    size = int(note.split("\n")[1])
    return note, publish(note, size, folder, url)
