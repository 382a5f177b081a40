"""Bulk back-load: good lines are stored through the referral pipeline, bad lines are reported
with their line number and OperationOutcome, and one bad line never costs its neighbours."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner
from sqlmodel import Session

from gateway.bulk import import_ndjson
from gateway.cli import main
from gateway.demo import seed_directory
from gateway.pipeline.hl7v2 import principal_for_client
from gateway.schema import init_db
from gateway.storage.repository import Repository
from profiles.systems import NHS_NUMBER
from tests.profiles.gp_message import referral_bundle

GOOD = ("9990001006", "9990001014", "9990001022")


def write_ndjson(path: Path) -> Path:
    lines = [
        orjson.dumps(referral_bundle(nhs, "A81001", "8VC01", f"BULK-{i}", ["8VC01"])) for i, nhs in enumerate(GOOD)
    ]
    lines.insert(1, b'{"resourceType": "Bundle", "entry": [')  # line 2: malformed JSON
    lines.insert(3, orjson.dumps(referral_bundle("9990001007", "A81001", ref_id="BULK-BAD")))  # line 4: bad NHS no.
    lines.append(lines[0])  # line 6: the first referral again (duplicate identifier)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_good_lines_are_stored_and_bad_ones_reported_by_line(engine, settings, tmp_path) -> None:
    init_db(engine)
    seed_directory(engine, settings)
    principal = principal_for_client(engine, "demo-gp")
    assert principal is not None
    report = import_ndjson(
        engine, settings, principal, write_ndjson(tmp_path / "in.ndjson"), batch_size=2, processes=2, progress=False
    )
    assert (report.stored, report.refused) == (3, 3)
    assert sorted((e["line"], e["status"]) for e in report.errors) == [(2, 400), (4, 422), (6, 409)]
    with Session(engine) as session:
        repo = Repository(session, principal)
        for nhs in GOOD:
            assert len(repo.find_by_token("ServiceRequest", "patient:identifier", NHS_NUMBER, nhs)) == 1


def test_spgw_import_prints_a_summary_and_writes_the_error_report(tmp_path) -> None:
    data = tmp_path / "data"
    runner = CliRunner()
    assert runner.invoke(main, ["clients", "list", "--data-dir", str(data)]).exit_code == 0
    from gateway.db import make_engine
    from gateway.settings import Settings

    settings = Settings(data_dir=data)
    seed_directory(make_engine(settings), settings)
    errors = tmp_path / "errors.ndjson"
    result = runner.invoke(
        main,
        [
            "import",
            str(write_ndjson(tmp_path / "in.ndjson")),
            "--as",
            "demo-gp",
            "--errors",
            str(errors),
            "--data-dir",
            str(data),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "stored 3, refused 3" in result.output
    rows = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert [r["line"] for r in rows] == [2, 4, 6]
    assert all(r["outcome"]["resourceType"] == "OperationOutcome" for r in rows)


def test_spgw_import_refuses_a_client_that_may_not_refer(tmp_path) -> None:
    data = tmp_path / "data"
    runner = CliRunner()
    runner.invoke(main, ["clients", "list", "--data-dir", str(data)])
    from gateway.db import make_engine
    from gateway.settings import Settings

    settings = Settings(data_dir=data)
    seed_directory(make_engine(settings), settings)
    result = runner.invoke(
        main, ["import", str(write_ndjson(tmp_path / "in.ndjson")), "--as", "demo-ig", "--data-dir", str(data)]
    )
    assert result.exit_code != 0
    assert "may create referrals" in result.output
