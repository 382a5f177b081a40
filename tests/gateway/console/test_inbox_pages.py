"""The inbox in-process: a vcse-staff person sees only their host's referrals, in plain English and
only the agreed fields; accept / hold / decline move the GP's Task; notices must be acknowledged;
outcomes go through the API's validation to Observations; the CSV holds no personal data."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlmodel import Session, select

from audit.store import AuditEntry
from gateway.console.roles import ConsoleRole
from gateway.demo import seed, withdrawal
from gateway.models import Packet, Referral
from tests.gateway.console.conftest import csrf_of, make_account, sign_in

ADA = "9990001006"  # the demo's referral from A81001 to 8VC01 (gateway/demo.py)
BRAM = "9990001014"  # the demo's referral to 8VC02


@pytest.fixture
def demo_app(app, engine, settings):  # type: ignore[no-untyped-def]
    seed(engine, settings)
    return app


@pytest.fixture
def staff(demo_app, engine, browser):  # type: ignore[no-untyped-def]
    account = make_account(engine, "sam.vcse", ConsoleRole.VCSE_STAFF, "8VC01")
    sign_in(browser, account)
    return browser


def referral_id_of(engine, nhs: str, host: str) -> str:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        row = session.exec(select(Referral).where(Referral.patient_nhs == nhs, Referral.recipient == host)).first()
        assert row is not None
        return row.referral_id


def task_status(client, token_for, engine, nhs: str, host: str) -> str:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        ref = session.exec(select(Referral).where(Referral.patient_nhs == nhs, Referral.recipient == host)).one()
    task = client.get(f"/fhir/Task/{ref.task_id}", headers=token_for("demo-gp")).json()
    return task["status"]


def test_the_inbox_lists_only_the_hosts_referrals_in_plain_english(staff, engine) -> None:
    page = staff.get("/console/inbox")
    assert page.status_code == 200
    assert "Ada" in page.text and "Social isolation" in page.text
    assert "Bram" not in page.text  # 8VC02's referral
    assert ADA not in page.text and "990 001 006" not in page.text.replace("999 ", "")
    ada = referral_id_of(engine, ADA, "8VC01")
    detail = staff.get(f"/console/inbox/{ada}")
    assert detail.status_code == 200
    assert "How to contact them" in detail.text and "Phone (mobile): 07700900000" in detail.text
    assert "NHS number" not in detail.text  # outside the default agreement
    assert "person.first_name" not in detail.text  # labels, not packet paths
    bram = referral_id_of(engine, BRAM, "8VC02")
    assert staff.get(f"/console/inbox/{bram}").status_code == 404  # another host's referral


def test_each_read_is_audited_with_the_person(staff, engine) -> None:
    """A person's read is audited under their name: a disclosure the first time the host gets a packet
    version, a re-access read after that (the demo's host has already pulled this one)."""
    ada = referral_id_of(engine, ADA, "8VC01")
    staff.get(f"/console/inbox/{ada}")
    with Session(engine) as session:
        entries = [e for e in session.exec(select(AuditEntry)) if "sam.vcse" in (e.content or "")]
    assert any(
        '"disclosure"' in e.content or "110106" in e.content or "re-access by 8VC01 of packet" in e.content
        for e in entries
    ), "no read by sam.vcse in the audit"


def test_accept_hold_and_decline_reach_the_gps_task(staff, engine, client, token_for) -> None:
    ada = referral_id_of(engine, ADA, "8VC01")
    page = staff.get(f"/console/inbox/{ada}")
    token = csrf_of(page.text)
    assert staff.post(f"/console/inbox/{ada}/accept", data={"csrf_token": "wrong"}).status_code == 403
    done = staff.post(f"/console/inbox/{ada}/accept", data={"csrf_token": token})
    assert done.status_code == 303 and done.headers["location"].endswith("?done=accepted")
    assert task_status(client, token_for, engine, ADA, "8VC01") == "accepted"
    staff.post(f"/console/inbox/{ada}/hold", data={"csrf_token": token})
    assert task_status(client, token_for, engine, ADA, "8VC01") == "on-hold"
    refused = staff.post(f"/console/inbox/{ada}/decline", data={"csrf_token": token, "reason": "other"})
    assert refused.status_code == 400
    assert "nhsuk-error-summary" in refused.text and "Say why you are declining" in refused.text
    staff.post(
        f"/console/inbox/{ada}/decline",
        data={"csrf_token": token, "reason": "no-capacity", "detail": "Full until March"},
    )
    task = client.get(
        "/fhir/Task", params={"focus": f"ServiceRequest/{_sr(engine, ada)}"}, headers=token_for("demo-gp")
    ).json()["entry"][0]["resource"]
    assert task["status"] == "rejected"
    assert task["statusReason"]["text"] == "We have no capacity to take new referrals at the moment: Full until March"


def _sr(engine, referral_id: str) -> str:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        ref = session.get(Referral, referral_id)
        assert ref is not None
        return ref.service_request_id


def test_a_ceased_referral_hides_the_person_and_its_notice_must_be_acknowledged(
    staff, engine, client, token_for
) -> None:
    ada = referral_id_of(engine, ADA, "8VC01")
    assert "Ada" in staff.get(f"/console/inbox/{ada}").text
    made = client.post(
        "/fhir/Consent",
        json=withdrawal(ADA, "8VC01", "2026-11-30T09:00:00+00:00"),
        headers=token_for("demo-gp", **{"Content-Type": "application/fhir+json"}),
    )
    assert made.status_code == 201, made.text
    inbox = staff.get("/console/inbox")
    assert "Stop: consent has ended" in inbox.text and "Acknowledge" in inbox.text
    detail = staff.get(f"/console/inbox/{ada}")
    assert "Ada" not in detail.text and "07700900000" not in detail.text
    assert "no longer shown" in detail.text
    with Session(engine) as session:
        notice = session.exec(select(Packet).where(Packet.referral_id == ada, Packet.kind == "cease")).one()
    token = csrf_of(inbox.text)
    done = staff.post(f"/console/inbox/notices/{notice.packet_id}/acknowledge", data={"csrf_token": token})
    assert done.status_code == 303
    after = staff.get("/console/inbox")
    assert "Stop: consent has ended" not in after.text
    assert "Acknowledged by sam.vcse" in staff.get(f"/console/inbox/{ada}").text


def test_another_hosts_notice_cannot_be_acknowledged(staff, engine) -> None:
    with Session(engine) as session:
        theirs = session.exec(select(Packet).where(Packet.recipient == "8VC02", Packet.kind == "cease")).first()
    assert theirs is not None  # the demo's withdrawal from 8VC02
    token = csrf_of(staff.get("/console/inbox").text)
    answer = staff.post(f"/console/inbox/notices/{theirs.packet_id}/acknowledge", data={"csrf_token": token})
    assert answer.status_code == 404


def _outcomes_form(staff, ada: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    page = staff.get(f"/console/inbox/{ada}/outcomes")
    assert page.status_code == 200
    submission = re.search(r'name="submission_id" value="([^"]+)"', page.text)
    assert submission
    return {"csrf_token": csrf_of(page.text), "submission_id": submission.group(1)}


def test_outcomes_are_validated_like_the_api_and_reach_the_gp(staff, engine, client, token_for) -> None:
    ada = referral_id_of(engine, ADA, "8VC01")
    staff.post(f"/console/inbox/{ada}/accept", data={"csrf_token": csrf_of(staff.get("/console/inbox").text)})
    form = _outcomes_form(staff, ada)
    bad = staff.post(
        f"/console/inbox/{ada}/outcomes",
        data={
            **form,
            "stage": "baseline",
            "ons4-life_satisfaction": "11",
            "ons4-worthwhile": "seven",
            "ons4-happiness": "5",
            "swemwbs-1": "3",
        },
    )
    assert bad.status_code == 400
    summary = bad.text.split('class="nhsuk-error-summary"')[1].split("</ul>")[0]
    assert "Life satisfaction must be between 0 and 10; got 11" in summary
    assert "Feeling things are worthwhile must be a whole number" in summary
    assert "Enter an answer from 0 to 10 for “anxiety yesterday”" in summary
    assert "Select an answer for statement 2" in summary
    assert 'href="#ons4-life_satisfaction"' in summary
    good = {
        **form,
        "stage": "baseline",
        "ons4-life_satisfaction": "6",
        "ons4-worthwhile": "7",
        "ons4-happiness": "5",
        "ons4-anxiety": "4",
        **{f"swemwbs-{i}": "3" for i in range(1, 8)},
    }
    saved = staff.post(f"/console/inbox/{ada}/outcomes", data=good)
    assert saved.status_code == 303, saved.text
    shown = staff.get(saved.headers["location"])
    assert "SWEMWBS metric score" in shown.text and "19.25" in shown.text  # raw 21 -> metric 19.25
    again = staff.post(f"/console/inbox/{ada}/outcomes", data=good)  # the same form twice: recorded once
    assert again.status_code == 303
    found = client.get(
        "/fhir/Observation",
        params={"patient:identifier": f"https://fhir.nhs.uk/Id/nhs-number|{ADA}"},
        headers=token_for("demo-gp"),
    ).json()
    codes = [e["resource"]["code"]["coding"][0].get("display", "") for e in found.get("entry", [])]
    assert sorted(codes) == ["ONS4 personal well-being (panel)", "SWEMWBS total raw score"]  # recorded once


def test_outcomes_before_accepting_are_refused_in_words(staff, engine) -> None:
    ada = referral_id_of(engine, ADA, "8VC01")
    form = _outcomes_form(staff, ada)
    answer = staff.post(
        f"/console/inbox/{ada}/outcomes", data={**form, "stage": "baseline", "pam-level": "2", "pam-score": "55"}
    )
    assert answer.status_code == 409
    assert "once the referral is accepted" in answer.text


def test_the_csv_export_lists_the_hosts_referrals_without_personal_data(staff, engine) -> None:
    answer = staff.get("/console/inbox/export.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    with Session(engine) as session:
        mine = session.exec(select(Packet).where(Packet.recipient == "8VC01", Packet.kind == "referral")).all()
    assert sorted(r["referral_id"] for r in rows) == sorted(p.referral_id for p in mine)
    assert {r["referrer"] for r in rows} == {"Riverside Surgery (demo)"}
    for nhs_or_name in (ADA, "Ada", "Cleo", "07700900000"):
        assert nhs_or_name not in answer.text


def test_other_roles_and_api_tokens_cannot_open_the_inbox(demo_app, engine, browser, ig_officer, token_for) -> None:
    sign_in(browser, ig_officer)
    assert browser.get("/console/inbox").status_code == 403
    browser.cookies.clear()
    answer = browser.get("/console/inbox", headers=token_for("demo-vcse"))
    assert answer.status_code == 303 and "/console/sign-in" in answer.headers["location"]


def test_a_referral_on_hold_still_gets_its_cease_notice(staff, engine, client, token_for) -> None:
    ada = referral_id_of(engine, ADA, "8VC01")
    staff.post(f"/console/inbox/{ada}/hold", data={"csrf_token": csrf_of(staff.get("/console/inbox").text)})
    client.post(
        "/fhir/Consent",
        json=withdrawal(ADA, "8VC01", "2026-11-30T09:00:00+00:00"),
        headers=token_for("demo-gp", **{"Content-Type": "application/fhir+json"}),
    )
    with Session(engine) as session:
        packet = session.exec(select(Packet).where(Packet.referral_id == ada, Packet.kind == "referral")).one()
        notices = session.exec(select(Packet).where(Packet.referral_id == ada, Packet.kind == "cease")).all()
    assert packet.status == "ceased" and len(notices) == 1
    assert task_status(client, token_for, engine, ADA, "8VC01") == "cancelled"


def test_the_api_takes_on_hold_too(demo_app, engine, client, token_for) -> None:
    ada = referral_id_of(engine, ADA, "8VC01")
    answer = client.post(f"/vcse/v1/referrals/{ada}/status", json={"status": "on-hold"}, headers=token_for("demo-vcse"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["task_status"] == "on-hold"
    listed = client.get("/vcse/v1/referrals", params={"status": "on-hold"}, headers=token_for("demo-vcse")).json()
    assert [r["referral_id"] for r in listed["referrals"]] == [ada]
