"""`spgw orgs`: an operator registers a VCSE host, its delivery and its data-sharing agreement."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gateway.cli import main
from tests.conftest import copy_template


@pytest.fixture(autouse=True)
def migrated(tmp_path, sqlite_template) -> None:
    """The operator has run `spgw migrate` on the data folder (the orgs commands never change the schema)."""
    copy_template(sqlite_template, tmp_path / "data")


def test_a_webhook_host_is_registered_with_its_agreement_and_its_secret_shown_once(tmp_path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    put = [
        "orgs",
        "put",
        "8AB12",
        "--name",
        "Walking Group",
        "--kind",
        "vcse",
        "--delivery-mode",
        "webhook",
        "--webhook-url",
        "https://crm.example.org/hook",
        "--allow",
        "person.first_name",
        "--allow",
        "referral.need_categories",
        *data,
    ]
    first = runner.invoke(main, put)
    assert first.exit_code == 0, first.output
    assert "webhook secret (shown once" in first.output
    again = runner.invoke(main, put)
    assert "webhook secret" not in again.output
    [org] = json.loads(runner.invoke(main, ["orgs", "list", "--json", *data]).output)
    assert org["data_sharing_agreement"]["allowed_fields"] == ["person.first_name", "referral.need_categories"]
    assert "webhook_secret" not in org


def test_an_agreement_naming_an_unknown_field_is_refused(tmp_path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "orgs",
            "put",
            "8AB12",
            "--name",
            "X",
            "--kind",
            "vcse",
            "--allow",
            "person.diagnosis",
            "--data-dir",
            str(tmp_path / "data"),
        ],
    )
    assert result.exit_code != 0
    assert "unknown packet fields: person.diagnosis" in result.output


def test_a_webhook_secret_is_rotated_once_and_the_rotation_audited(tmp_path) -> None:
    from sqlalchemy import select
    from sqlmodel import Session

    from audit.store import AuditEntry
    from gateway.db import make_engine
    from gateway.models import Organisation
    from gateway.settings import Settings

    data = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    runner.invoke(
        main,
        [
            "orgs",
            "put",
            "8AB12",
            "--name",
            "W",
            "--kind",
            "vcse",
            "--delivery-mode",
            "webhook",
            "--webhook-url",
            "https://crm.example.org/hook",
            *data,
        ],
    )
    engine = make_engine(Settings(data_dir=tmp_path / "data"))
    with Session(engine) as session:
        before = session.get(Organisation, "8AB12").webhook_secret
    rotated = runner.invoke(main, ["orgs", "rotate-secret", "8AB12", *data])
    assert rotated.exit_code == 0, rotated.output
    with Session(engine) as session:
        after = session.get(Organisation, "8AB12").webhook_secret
        activities = [c for (c,) in session.execute(select(AuditEntry.content)) if "rotate-webhook-secret" in c]
    assert after != before and after in rotated.output and len(activities) == 1
    assert before not in activities[0] and after not in activities[0]


def test_a_pull_host_has_no_secret_to_rotate(tmp_path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    runner.invoke(main, ["orgs", "put", "8AB13", "--name", "P", "--kind", "vcse", *data])
    result = runner.invoke(main, ["orgs", "rotate-secret", "8AB13", *data])
    assert result.exit_code != 0 and "not a webhook host" in result.output
