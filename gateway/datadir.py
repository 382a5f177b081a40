"""The data folder holds the SQLite database (NHS numbers, names, phone numbers, webhook secrets) and
the gateway's private keys: only the account that runs the gateway may read it.

`ensure_private_dir` creates the folder 0700 and refuses to start on one that group or others can
reach; `private_file` creates the database file 0600 before SQLite opens it, since SQLite gives its
-wal and -shm files the database file's own mode.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class DataFolderNotPrivate(RuntimeError):
    """The data folder is readable (or writable) by other accounts: refuse to start."""


def ensure_private_dir(path: Path) -> Path:
    """Returns the folder, created 0700 if missing; raises DataFolderNotPrivate if others can reach it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise DataFolderNotPrivate(
            f"The data folder {path} has mode {oct(mode)}: other accounts can read patient data and keys there. "
            f"Refusing to start. Make it private with: chmod 700 {path}"
        )
    return path


def private_file(path: Path) -> Path:
    """Returns the path of a file that exists with mode 0600 (created empty if missing, narrowed if looser)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def narrow_sqlite_files(database: Path) -> None:
    """Narrows the database's -wal, -shm and -journal files to 0600 where they exist (made by an older
    version with the default umask)."""
    for suffix in ("-wal", "-shm", "-journal"):
        sidecar = database.with_name(database.name + suffix)
        if sidecar.exists() and stat.S_IMODE(sidecar.stat().st_mode) & 0o077:
            sidecar.chmod(0o600)
