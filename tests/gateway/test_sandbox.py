"""The sandbox: synthetic referrals for the calling VCSE host, only where SPGW_SANDBOX=true."""

from __future__ import annotations

from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.auth.principal import ROLE_SCOPES, Principal, Role
from gateway.auth.tokens import issue_access_token
from gateway.demo import seed_directory
from profiles.nhs_number import is_valid


def test_without_the_setting_there_is_no_sandbox(client, token_for) -> None:
    answer = client.post("/vcse/v1/sandbox/referrals", headers=token_for("demo-vcse"))
    assert answer.status_code == 404
    assert "/vcse/v1/sandbox/referrals" not in client.get("/openapi.json").json()["paths"]


def test_a_sandbox_referral_reaches_only_the_calling_host(settings, engine, monkeypatch) -> None:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    app = create_app(settings.model_copy(update={"sandbox": True}), engine)
    seed_directory(engine, settings)
    with TestClient(app, base_url="http://testserver") as sandboxed:

        def bearer(client_id: str, org: str, role: Role) -> dict[str, str]:
            principal = Principal(client_id, org, role, frozenset(ROLE_SCOPES[role]))
            minted = issue_access_token(app.state.spgw.token_keys, principal, issuer="http://testserver", ttl=300)
            return {"Authorization": f"Bearer {minted}"}

        made = sandboxed.post("/vcse/v1/sandbox/referrals", headers=bearer("demo-vcse-b", "8VC02", Role.VCSE))
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["status"] == "new" and body["referral_id"].startswith("SPR-")

        mine = sandboxed.get("/vcse/v1/referrals", headers=bearer("demo-vcse-b", "8VC02", Role.VCSE)).json()
        packet = next(p for p in mine["referrals"] if p["referral_id"] == body["referral_id"])
        assert packet["referrer"]["organisation"] == "SANDBOX"
        assert packet["referral"]["need_categories"] == ["Social isolation"]
        others = sandboxed.get("/vcse/v1/referrals", headers=bearer("demo-vcse", "8VC01", Role.VCSE)).json()
        assert body["referral_id"] not in [p["referral_id"] for p in others["referrals"]]

        refused = sandboxed.post("/vcse/v1/sandbox/referrals", headers=bearer("demo-gp", "A81001", Role.REFERRER))
        assert refused.status_code == 403


def test_synthetic_nhs_numbers_are_valid_and_in_the_test_range() -> None:
    from gateway.pipeline.sandbox import synthetic_nhs_number

    for _ in range(50):
        nhs = synthetic_nhs_number()
        assert nhs.startswith("999") and is_valid(nhs)
