"""Operating the gateway: `spgw migrate` (the only command that changes the schema) and `spgw backup`."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from gateway.cli.common import data_dir_option, load_settings
from gateway.settings import Settings


@click.command()
@data_dir_option
def migrate(data_dir: Path | None) -> None:
    """Bring the database schema to this version's newest migration and create the gateway's keys if
    missing. Idempotent: run it before starting (or upgrading) serve, worker and mllp processes."""
    from gateway.cli.run import prepare
    from gateway.schema import head_revisions

    settings = load_settings(data_dir)
    prepare(settings)
    click.echo(f"schema at {', '.join(sorted(head_revisions()))}; keys in {settings.keys_dir}")


@click.command()
@click.argument("dest", required=False, type=click.Path(dir_okay=False, path_type=Path))
@data_dir_option
def backup(dest: Path | None, data_dir: Path | None) -> None:
    """Write a consistent copy of the database to DEST while the gateway runs.

    SQLite: the online backup API (a single database file). PostgreSQL: `pg_dump --format=custom`
    (restore with pg_restore). Default DEST: <data folder>/backups/spgw-<UTC time>.db or .dump.
    The keys folder is not included: keep it with your secrets, not with your backups."""
    settings = load_settings(data_dir)
    url = make_url(settings.db_url)
    postgres = url.get_backend_name() == "postgresql"
    if dest is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        dest = settings.data_dir / "backups" / f"spgw-{stamp}.{'dump' if postgres else 'db'}"
    if dest.exists():
        raise click.ClickException(f"{dest} exists; give a new file name")
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if postgres:
        _pg_dump(settings, dest)
    else:
        _sqlite_backup(Path(url.database or ""), dest)
    click.echo(f"backup written to {dest.resolve()}")


def _private_file(path: Path) -> Path:
    """Creates `path` empty and readable by its owner only, before anything writes patient data into it
    (SQLite and pg_dump keep the mode of a file that exists)."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
    return path


def _sqlite_backup(source: Path, dest: Path) -> None:
    if not source.is_file():
        raise click.ClickException(f"there is no database at {source}: nothing to back up")
    partial = _private_file(dest.with_name(dest.name + ".partial"))
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    out = sqlite3.connect(partial)
    try:
        src.backup(out, pages=1024)  # copies in steps; writers keep working between them
        out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        out.close()
        src.close()
    partial.replace(dest)  # a backup file either is complete or is not there


def _pg_dump(settings: Settings, dest: Path) -> None:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise click.ClickException("pg_dump is not installed (Debian: apt-get install postgresql-client)")
    url = make_url(settings.db_url).set(drivername="postgresql")
    partial = _private_file(dest.with_name(dest.name + ".partial"))
    # The URL (with any password) goes in as the dbname argument, which pg_dump treats as a connection string.
    done = subprocess.run(  # noqa: S603 (a fixed program and arguments; no shell)
        [pg_dump, "--format=custom", "--no-owner", f"--file={partial}", f"--dbname={url.render_as_string(False)}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise click.ClickException(f"pg_dump failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    partial.replace(dest)
