"""Issue 10 item 15, through the token endpoint: failed token requests are limited per claimed client id
and per source address (429 with Retry-After), the limit is audited once per window and not per
request, and a request whose assertion verifies is never locked out by someone else's failures."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.gateway.test_api_auth import (
    assertion_claims,
    assertion_for,
    auth_events,
    private_jwk,
    sign_claims,
    token_form,
)
from tests.gateway.test_token_refusals import _stranger_key

pytestmark = pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])


@pytest.fixture
def limited(settings, engine, monkeypatch: pytest.MonkeyPatch):
    from gateway.app import create_app
    from gateway.demo import seed_directory

    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    tight = settings.model_copy(
        update={"token_failures_per_client": 5, "token_failures_per_address": 12, "token_failure_window": 60}
    )
    app = create_app(tight, engine)
    seed_directory(engine, tight)
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def _bad(client, claimed: str, kid: str = "no-such-kid"):  # type: ignore[no-untyped-def]
    return client.post("/oauth2/token", data=token_form(sign_claims(assertion_claims(claimed), _stranger_key(kid))))


def test_failures_for_one_client_turn_into_429_audited_once(limited, engine, settings) -> None:
    refused_before = len(auth_events(engine, "4"))

    codes = [_bad(limited, "demo-gp").status_code for _ in range(9)]

    assert codes == [401] * 5 + [429] * 4
    last = _bad(limited, "demo-gp")
    assert last.status_code == 429 and 1 <= int(last.headers["Retry-After"]) <= 61
    events = auth_events(engine, "4")[refused_before:]
    assert len(events) == 5 + 1  # five 401s, one event for the window's limit, none per 429
    assert "refused for" in events[-1]["outcomeDesc"]
    # The real client, holding its key, still gets its token.
    good = limited.post("/oauth2/token", data=token_form(assertion_for(settings, "demo-gp")))
    assert good.status_code == 200, good.text


def test_failures_from_one_address_over_many_client_ids_are_stopped(limited, settings) -> None:
    codes = [_bad(limited, f"guess-{n}").status_code for n in range(14)]

    assert codes[:12] == [401] * 12 and codes[12:] == [429, 429]
    # An address over its limit is stopped before anything is verified, a valid assertion included.
    stopped = limited.post("/oauth2/token", data=token_form(assertion_for(settings, "demo-gp")))
    assert stopped.status_code == 429


def test_successes_are_not_counted(limited, settings) -> None:
    for _ in range(15):
        response = limited.post("/oauth2/token", data=token_form(assertion_for(settings, "demo-gp")))
        assert response.status_code == 200
    assert _bad(limited, "demo-gp", private_jwk(settings, "demo-gp")["kid"]).status_code == 401
