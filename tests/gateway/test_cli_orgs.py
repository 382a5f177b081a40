"""`spgw orgs`: an operator registers a VCSE host, its delivery and its data-sharing agreement."""

from __future__ import annotations

import json

from click.testing import CliRunner

from gateway.cli import main


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
