"""The VCSE change feed: a cursor on every list answer, a second poll that returns nothing new, changes
after the cursor, one disclosure per packet version (re-reads are re-access), acknowledgement, and 400 for
parameters the route does not take."""

from __future__ import annotations

from typing import Any

from tests.profiles.gp_message import referral_bundle

FHIR = {"Content-Type": "application/fhir+json"}


def _refer(client, token_for, nhs: str, ref_id: str, given: str = "Feedy") -> str:  # type: ignore[no-untyped-def]
    message = referral_bundle(nhs, "A81001", "8VC01", ref_id, ["8VC01"], given=given)
    stored = client.post("/fhir/$process-message", json=message, headers=token_for("demo-gp", **FHIR))
    assert stored.status_code == 200, stored.text
    return next(
        e["resource"]["id"] for e in stored.json()["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
    )


def _list(client, token_for, **params: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    answer = client.get("/vcse/v1/referrals", params=params, headers=token_for("demo-vcse"))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_second_poll_with_the_cursor_returns_nothing_new(client, token_for) -> None:
    _refer(client, token_for, "9990002002", "FEED-1")
    first = _list(client, token_for)
    assert [p["person"]["first_name"] for p in first["referrals"]] == ["Feedy"]
    assert first["cursor"] and first["more"] is False

    second = _list(client, token_for, since=first["cursor"])

    assert second["referrals"] == [] and second["count"] == 0
    assert second["cursor"] == first["cursor"]


def test_changes_after_the_cursor_come_back_once(client, token_for) -> None:
    _refer(client, token_for, "9990002010", "FEED-2", given="Early")
    cursor = _list(client, token_for)["cursor"]
    _refer(client, token_for, "9990002029", "FEED-3", given="Later")

    new = _list(client, token_for, since=cursor)
    assert [p["person"]["first_name"] for p in new["referrals"]] == ["Later"]

    early = next(p for p in _list(client, token_for)["referrals"] if p["person"]["first_name"] == "Early")
    accepted = client.post(
        f"/vcse/v1/referrals/{early['referral_id']}/status", json={"status": "accepted"}, headers=token_for("demo-vcse")
    )
    assert accepted.status_code == 200
    changed = _list(client, token_for, since=new["cursor"])
    assert [(p["referral_id"], p["status"]) for p in changed["referrals"]] == [(early["referral_id"], "accepted")]
    assert _list(client, token_for, since=changed["cursor"])["referrals"] == []


def test_a_small_limit_pages_through_the_feed(client, token_for) -> None:
    for i, nhs in enumerate(("9990002037", "9990002045", "9990002053")):
        _refer(client, token_for, nhs, f"FEED-P{i}", given=f"Page{i}")
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = _list(client, token_for, limit="2", **({"since": cursor} if cursor else {}))
        seen += [p["person"]["first_name"] for p in page["referrals"]]
        cursor = page["cursor"]
        if not page["more"]:
            break
    assert seen == ["Page0", "Page1", "Page2"]


def test_polling_records_one_disclosure_per_version_and_re_access_after(client, token_for) -> None:
    nhs = "9990002061"
    _refer(client, token_for, nhs, "FEED-4", given="Once")
    first = _list(client, token_for)
    _list(client, token_for)  # the same version again, without a cursor
    referral_id = first["referrals"][0]["referral_id"]
    client.get(f"/vcse/v1/referrals/{referral_id}", headers=token_for("demo-vcse"))

    report = client.get(f"/ig/v1/patients/{nhs}/disclosures", headers=token_for("demo-ig")).json()

    assert len(report["disclosures"]) == 1
    assert report["disclosures"][0]["recipient_org"] == "8VC01"
    audit = client.get(
        "/fhir/AuditEvent",
        params={"patient:identifier": f"https://fhir.nhs.uk/Id/nhs-number|{nhs}"},
        headers=token_for("demo-ig"),
    ).json()
    texts = [e["resource"].get("outcomeDesc") or "" for e in audit.get("entry", [])]
    assert sum("re-access by 8VC01" in t for t in texts) == 2


def test_a_narrowed_agreement_is_a_new_version_and_a_new_disclosure(client, token_for) -> None:
    nhs = "9990002088"
    _refer(client, token_for, nhs, "FEED-5", given="Narrow")
    _list(client, token_for)
    narrowed = client.put(
        "/admin/v1/organisations/8VC01",
        json={"name": "Lincoln Befriending Network (demo)", "kind": "vcse", "allowed_fields": ["person.first_name"]},
        headers=token_for("demo-admin"),
    )
    assert narrowed.status_code == 200, narrowed.text
    again = _list(client, token_for)

    assert again["referrals"][0]["person"] == {"first_name": "Narrow"}
    report = client.get(f"/ig/v1/patients/{nhs}/disclosures", headers=token_for("demo-ig")).json()
    assert [d["fields"] for d in report["disclosures"]][-1] == ["person.first_name"]
    assert len(report["disclosures"]) == 2


def test_withdrawal_puts_the_cease_in_both_feeds(client, token_for) -> None:
    from gateway.demo import withdrawal

    nhs = "9990002096"
    _refer(client, token_for, nhs, "FEED-6", given="Ceased")
    referrals = _list(client, token_for)
    notices = client.get("/vcse/v1/notices", headers=token_for("demo-vcse")).json()
    assert notices["notices"] == [] and notices["cursor"]

    withdrawn = client.post(
        "/fhir/Consent",
        json=withdrawal(nhs, "8VC01", "2026-11-30T09:00:00+00:00"),
        headers=token_for("demo-gp", **FHIR),
    )
    assert withdrawn.status_code == 201, withdrawn.text

    changed = _list(client, token_for, since=referrals["cursor"])
    assert [p["status"] for p in changed["referrals"]] == ["ceased"]
    assert "person" not in changed["referrals"][0]
    new_notices = client.get(
        "/vcse/v1/notices", params={"since": notices["cursor"]}, headers=token_for("demo-vcse")
    ).json()
    assert [(n["kind"], n["reason"]) for n in new_notices["notices"]] == [("cease", "consent-withdrawn")]
    after = client.get("/vcse/v1/notices", params={"since": new_notices["cursor"]}, headers=token_for("demo-vcse"))
    assert after.json()["notices"] == []


def test_ack_shows_the_gp_received_and_is_idempotent(client, token_for) -> None:
    sr_id = _refer(client, token_for, "9990002118", "FEED-7", given="Acked")
    referral_id = _list(client, token_for)["referrals"][0]["referral_id"]

    first = client.post(f"/vcse/v1/referrals/{referral_id}/ack", headers=token_for("demo-vcse"))
    again = client.post(f"/vcse/v1/referrals/{referral_id}/ack", headers=token_for("demo-vcse"))

    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["task_status"] == "received"
    tasks = client.get("/fhir/Task", params={"focus": f"ServiceRequest/{sr_id}"}, headers=token_for("demo-gp")).json()
    assert [e["resource"]["status"] for e in tasks["entry"]] == ["received"]
    accepted = client.post(
        f"/vcse/v1/referrals/{referral_id}/status", json={"status": "accepted"}, headers=token_for("demo-vcse")
    )
    assert accepted.json()["task_status"] == "accepted"
    other = client.post(f"/vcse/v1/referrals/{referral_id}/ack", headers=token_for("demo-vcse-b"))
    assert other.status_code == 404


def test_unknown_query_parameters_are_refused_with_the_supported_ones(client, token_for) -> None:
    answer = client.get("/vcse/v1/referrals", params={"sinse": "x"}, headers=token_for("demo-vcse"))

    assert answer.status_code == 400
    issue = answer.json()["issue"][0]
    assert issue["diagnostics"] == "Unknown query parameter sinse; this route supports: limit, since, status"
    assert issue["expression"] == ["sinse"]
    notices = client.get("/vcse/v1/notices", params={"status": "new"}, headers=token_for("demo-vcse"))
    assert notices.status_code == 400 and "supports: limit, since" in notices.text
    admin = client.get("/admin/v1/organisations", params={"page": "2"}, headers=token_for("demo-admin"))
    assert admin.status_code == 400 and "supports: none" in admin.text


def test_a_cursor_the_gateway_did_not_issue_is_refused_in_words(client, token_for) -> None:
    answer = client.get("/vcse/v1/referrals", params={"since": "2026-11-30"}, headers=token_for("demo-vcse"))

    assert answer.status_code == 400
    assert "since must be a cursor" in answer.json()["issue"][0]["diagnostics"]
