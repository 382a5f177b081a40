"""Findings of a code review, each pinned by a test that failed before its fix."""

from __future__ import annotations

import json
import logging

import pytest

from tests.fixtures.hl7v2.messages import er7, segments
from tests.profiles.gp_message import referral_bundle

FHIR_JSON = "application/fhir+json"
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
PATIENT = "9990001006"  # fictitious, in the 999 test range


def _refer(client, token_for, *, ref_id: str, consent: bool = True) -> dict[str, dict]:
    bundle = referral_bundle(
        PATIENT, "A81001", vcse_id="8VC01", ref_id=ref_id, consent_to=["8VC01"] if consent else None
    )
    headers = {**token_for("demo-gp"), "Content-Type": FHIR_JSON, "X-Request-ID": f"rq-{ref_id}",
               "X-Correlation-ID": f"co-{ref_id}"}
    response = client.post("/fhir/$process-message", json=bundle, headers=headers)
    assert response.status_code == 200, response.text
    return {e["resource"]["resourceType"]: e["resource"] for e in response.json()["entry"]}


# -- IG rule 3: a VCSE host never receives the NHS number through the FHIR Task -------------------


@pytest.mark.parametrize("consent", [True, False])
def test_a_vcse_host_reading_its_task_does_not_see_who_it_is_for(client, token_for, consent: bool) -> None:
    task_id = _refer(client, token_for, ref_id=f"RV-TASK-{consent}", consent=consent)["Task"]["id"]
    vcse = token_for("demo-vcse")

    read = client.get(f"/fhir/Task/{task_id}", headers=vcse)
    history = client.get(f"/fhir/Task/{task_id}/_history/1", headers=vcse)
    search = client.get("/fhir/Task", headers=vcse)

    assert read.status_code == history.status_code == search.status_code == 200
    assert [e["resource"]["id"] for e in search.json()["entry"]] == [task_id]
    for text in (read.text, history.text, search.text):
        assert PATIENT not in text
        assert "Patient/" not in text
    # the referrer still sees whom its own Task is for
    own = client.get(f"/fhir/Task/{task_id}", headers=token_for("demo-gp")).json()
    assert own["for"]["identifier"] == {"system": NHS_SYSTEM, "value": PATIENT}


def test_a_vcse_host_cannot_search_tasks_by_nhs_number(client, token_for) -> None:
    _refer(client, token_for, ref_id="RV-TASK-SEARCH")
    url = f"/fhir/Task?patient:identifier={NHS_SYSTEM}|{PATIENT}"

    refused = client.get(url, headers=token_for("demo-vcse"))

    assert refused.status_code == 403, refused.text
    assert PATIENT not in refused.text
    assert client.get(url, headers=token_for("demo-gp")).json()["entry"]


# -- a client's mistake is never a 500: a JSON number where FHIR wants a date/dateTime string -----


@pytest.mark.parametrize("value", [5, 1764000000.5])
def test_a_consent_put_with_a_numeric_datetime_is_refused_not_a_500(client, token_for, value: float) -> None:
    _refer(client, token_for, ref_id=f"RV-DT-PUT-{value}")
    consent = client.get("/fhir/Consent", headers=token_for("demo-gp")).json()["entry"][0]["resource"]
    body = {**consent, "dateTime": value}

    response = client.put(
        f"/fhir/Consent/{consent['id']}",
        content=json.dumps(body),
        headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON},
    )

    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == ["Consent.dateTime"]


def test_a_consent_post_with_a_numeric_datetime_is_refused_not_a_500(client, token_for) -> None:
    _refer(client, token_for, ref_id="RV-DT-POST")
    consent = client.get("/fhir/Consent", headers=token_for("demo-gp")).json()["entry"][0]["resource"]
    body = {k: v for k, v in consent.items() if k not in ("id", "meta")} | {"dateTime": 1764000000}

    response = client.post(
        "/fhir/Consent", content=json.dumps(body), headers={**token_for("demo-gp"), "Content-Type": FHIR_JSON}
    )

    assert response.status_code == 422, response.text


def test_a_referral_message_with_a_numeric_authored_on_is_refused_not_a_500(client, token_for) -> None:
    bundle = referral_bundle(PATIENT, "A81001", vcse_id="8VC01", ref_id="RV-DT-MSG", consent_to=["8VC01"])
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "ServiceRequest":
            entry["resource"]["authoredOn"] = 1764000000
    headers = {**token_for("demo-gp"), "Content-Type": FHIR_JSON, "X-Request-ID": "rq-dt", "X-Correlation-ID": "co"}

    response = client.post("/fhir/$process-message", json=bundle, headers=headers)

    assert response.status_code == 422, response.text
    assert "Bundle.entry[1].resource.authoredOn" in {e for i in response.json()["issue"] for e in i["expression"]}


# -- HL7 v2: the ERR codes docs/hl7v2.md promises (204 unknown sender, 205 duplicate), not 207 -----

V2_MEDIA = "x-application/hl7-v2+er7"


def _err(ack: str) -> str:
    (err,) = [s for s in ack.split("\r") if s.startswith("ERR|")]
    return err.split("|")[3]


def test_a_v2_referral_already_received_is_answered_205_duplicate_key(client, token_for) -> None:
    headers = {**token_for("demo-gp"), "Content-Type": V2_MEDIA}
    first = client.post("/hl7v2", content=er7(segments(control_id="DUP1")).encode(), headers=headers)
    assert "MSA|AA|DUP1" in first.text
    # a new MSH-10 but the same referral (RF1-6 is built from the first control id)
    again = segments(control_id="DUP1")
    again[0] = again[0].replace("|DUP1|", "|DUP2|")

    second = client.post("/hl7v2", content=er7(again).encode(), headers=headers)

    assert "MSA|AE|DUP2" in second.text
    assert _err(second.text) == "205^Duplicate key identifier^HL70357"


def test_an_unregistered_v2_sender_is_answered_204_unknown_key(app, engine, settings) -> None:
    from gateway.pipeline.hl7v2 import handle_message

    ack = handle_message(engine, settings, None, er7(segments(control_id="NOBODY1")).encode()).decode()

    assert "MSA|AR|NOBODY1" in ack
    assert _err(ack) == "204^Unknown key identifier^HL70357"


# -- IG rule 4: directory changes made from the command line are audited like the admin API's -----


def _cli_audit_descriptions(data_dir) -> list[str]:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from audit.store import AuditEntry
    from gateway.db import make_engine
    from gateway.settings import Settings

    engine = make_engine(Settings(data_dir=data_dir))
    try:
        with engine.connect() as conn:
            contents = [c for (c,) in conn.execute(select(AuditEntry.content).order_by(AuditEntry.seq))]
    finally:
        engine.dispose()
    return [json.loads(c).get("outcomeDesc") or "" for c in contents if c]


def test_cli_directory_changes_are_audited(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    data_dir = tmp_path / "data"
    monkeypatch.setenv("SPGW_DATA_DIR", str(data_dir))  # the CLI sets it; put it back afterwards
    data = ["--data-dir", str(data_dir)]
    runner = CliRunner()
    commands = [
        ["orgs", "put", "8AB12", "--name", "Walking Group", "--kind", "vcse", "--allow", "person.nhs_number"],
        ["clients", "add", "walkers", "--organisation", "8AB12", "--role", "vcse",
         "--generate-key", str(tmp_path / "walkers.jwk")],
        ["clients", "rotate-key", "walkers", "--out", str(tmp_path / "walkers-2.jwk")],
        ["clients", "disable", "walkers"],
    ]
    for command in commands:
        result = runner.invoke(main, [*command, *data])
        assert result.exit_code == 0, result.output

    described = "\n".join(_cli_audit_descriptions(data_dir))

    assert "organisation 8AB12 saved (agreement: person.nhs_number)" in described
    assert "client walkers added (vcse for 8AB12)" in described
    assert "client walkers: new key" in described
    assert "client walkers disabled" in described


# -- no patient identifier in the logs: a logged fault shows its type and frames, never its message --


def test_a_failed_v2_message_logs_no_exception_message(
    client, token_for, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.pipeline import referrals

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError(f"could not store the referral of {PATIENT}")

    monkeypatch.setattr(referrals, "accept_message", broken)
    caplog.set_level(logging.DEBUG)

    ack = client.post(
        "/hl7v2",
        content=er7(segments(control_id="LOGGED1")).encode(),
        headers={**token_for("demo-gp"), "Content-Type": V2_MEDIA},
    )

    assert "MSA|AR|LOGGED1" in ack.text
    assert "RuntimeError" in caplog.text
    assert PATIENT not in caplog.text


def test_a_delivery_loop_fault_logs_no_exception_message(
    engine, settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.delivery import worker

    thread = worker.WorkerThread(engine, settings, interval=0)

    def broken(*args: object, **kwargs: object) -> int:
        thread.stop()
        raise RuntimeError(f"could not deliver the packet about {PATIENT}")

    monkeypatch.setattr(worker, "run_once", broken)
    caplog.set_level(logging.DEBUG)

    thread.run()  # in this thread: one pass, which fails and stops the loop

    assert "RuntimeError" in caplog.text
    assert PATIENT not in caplog.text
