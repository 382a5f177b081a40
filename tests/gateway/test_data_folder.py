"""Issue 10 item 9: the data folder is created 0700 and the SQLite database, WAL and SHM files 0600;
the gateway refuses to start on a data folder other accounts can reach, with a clear message."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import text

from gateway.cli import main as spgw
from gateway.db import make_engine, transaction
from gateway.schema import init_db
from gateway.settings import Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_folder_is_0700_and_the_database_files_0600(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    engine = make_engine(Settings(data_dir=data))
    try:
        init_db(engine)
        with transaction(engine) as session:  # a write, so the -wal and -shm files exist
            session.execute(text("CREATE TABLE IF NOT EXISTS probe (n INTEGER)"))
            session.execute(text("INSERT INTO probe VALUES (1)"))
        files = sorted(p for p in data.iterdir() if p.name.startswith("spgw.db"))
        assert {p.name for p in files} >= {"spgw.db", "spgw.db-wal", "spgw.db-shm"}
        assert mode(data) == 0o700
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        engine.dispose()


def test_an_existing_loose_database_file_is_narrowed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "spgw.db").touch(mode=0o644)
    (data / "spgw.db").chmod(0o644)
    make_engine(Settings(data_dir=data)).dispose()
    assert mode(data / "spgw.db") == 0o600


def test_the_cli_refuses_a_data_folder_others_can_read(tmp_path: Path) -> None:
    data = tmp_path / "shared-data"
    data.mkdir()
    data.chmod(0o755)

    result = CliRunner().invoke(spgw, ["clients", "list", "--data-dir", str(data)])

    assert result.exit_code != 0
    assert "Refusing to start" in result.output and "chmod 700" in result.output
    assert not (data / "spgw.db").exists()  # nothing was created in it
