"""Body mistakes on the VCSE and admin APIs answer in words: what was wrong and where, never the
validator's own text."""

from __future__ import annotations

import pytest

from tests.profiles.gp_message import referral_bundle

RAW = ("Input should be", "JSON decode error", "Field required", "Extra inputs are not permitted")


@pytest.fixture
def referral_id(client, token_for) -> str:  # type: ignore[no-untyped-def]
    message = referral_bundle("9990002126", "A81001", "8VC01", "ERR-1", ["8VC01"])
    client.post(
        "/fhir/$process-message",
        json=message,
        headers=token_for("demo-gp", **{"Content-Type": "application/fhir+json"}),
    )
    return client.get("/vcse/v1/referrals", headers=token_for("demo-vcse")).json()["referrals"][0]["referral_id"]


def _issues(answer) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    assert not any(raw in answer.text for raw in RAW), answer.text
    return [(i["diagnostics"], (i.get("expression") or [None])[0]) for i in answer.json()["issue"]]


def test_a_form_encoded_status_update_is_told_to_send_json(client, token_for, referral_id: str) -> None:
    answer = client.post(
        f"/vcse/v1/referrals/{referral_id}/status",
        content=b"status=accepted",
        headers=token_for("demo-vcse", **{"Content-Type": "application/x-www-form-urlencoded"}),
    )
    assert answer.status_code == 415
    assert _issues(answer) == [
        (
            "Content-Type 'application/x-www-form-urlencoded' is not supported: send JSON with "
            "Content-Type: application/json",
            None,
        )
    ]


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        (
            b'{"status": "done"}',
            422,
            [("status must be one of accepted, declined, on-hold, in-progress, completed; got 'done'", "status")],
        ),
        (b"{}", 422, [("The field status is required", "status")]),
        (
            b'{"status": "accepted", "note": "x"}',
            422,
            [("note is not a field this route takes (check the spelling)", "note")],
        ),
        (
            b'["accepted"]',
            422,
            [("The body must be a JSON object; send JSON with Content-Type: application/json", None)],
        ),
        (b'{"status": "declined", "reason": 5}', 422, [("reason must be text; got 5", "reason")]),
    ],
)
def test_status_update_mistakes_say_what_and_where(client, token_for, referral_id: str, body, status, said) -> None:
    answer = client.post(
        f"/vcse/v1/referrals/{referral_id}/status",
        content=body,
        headers=token_for("demo-vcse", **{"Content-Type": "application/json"}),
    )
    assert answer.status_code == status
    assert _issues(answer) == said


def test_malformed_json_is_400_in_words(client, token_for, referral_id: str) -> None:
    answer = client.post(
        f"/vcse/v1/referrals/{referral_id}/status",
        content=b'{"status": ',
        headers=token_for("demo-vcse", **{"Content-Type": "application/json"}),
    )
    assert answer.status_code == 400
    [(text, _where)] = _issues(answer)
    assert text.startswith("The body is not valid JSON (") and text.endswith(
        "send JSON with Content-Type: application/json"
    )


def test_admin_body_mistakes_say_what_and_where(client, token_for) -> None:
    answer = client.put(
        "/admin/v1/organisations/8VC07",
        json={"name": "", "kind": "charity", "webhook_url": "ftp://x"},
        headers=token_for("demo-admin"),
    )
    assert answer.status_code == 422
    assert _issues(answer) == [
        ("name must not be empty", "name"),
        ("kind must be one of gp-practice, referrer, vcse, icb; got 'charity'", "kind"),
    ]  # the URL itself is checked by the endpoint rule (https to a public host) once the body is well formed
    query = client.get("/admin/v1/outbox", params={"status": "lost"}, headers=token_for("demo-admin"))
    assert query.status_code == 400
    assert _issues(query) == [("status must be one of pending, delivered, dead, withdrawn; got 'lost'", "status")]
