"""The client registry: keys, scopes, rotation and disabling, checked through the real token endpoint."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth.client_side import TokenError, fetch_token
from gateway.auth.clients import add_client, disable_client, get_active_client, list_clients, rotate_key
from gateway.auth.keys import TokenKeys
from gateway.auth.principal import ROLE_SCOPES, Role
from gateway.auth.server import TokenEndpoint
from gateway.auth.tokens import verify_access_token
from gateway.db import make_engine, transaction
from gateway.models import Client, Organisation
from gateway.settings import Settings

BASE = "http://testserver"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    eng = make_engine(settings)
    SQLModel.metadata.create_all(eng)
    with transaction(eng) as session:
        for org_id, kind in (("A81001", "gp-practice"), ("8VC01", "vcse")):
            session.add(
                Organisation(
                    id=org_id,
                    name=f"Test {org_id}",
                    kind=kind,
                    identifier_system="https://fhir.nhs.uk/Id/ods-organization-code",
                )
            )
    yield eng
    eng.dispose()


@pytest.fixture
def keys(settings: Settings) -> TokenKeys:
    return TokenKeys(settings.keys_dir)


@pytest.fixture
def http(engine: Engine, settings: Settings, keys: TokenKeys, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    endpoint = TokenEndpoint(engine, settings, keys)
    app = FastAPI()

    @app.post("/oauth2/token")
    async def token(request: Request) -> Response:
        response, _ = await endpoint.handle(request)
        return response

    with TestClient(app, base_url=BASE) as client:
        yield client


def get_token(http: TestClient, client_id: str, key: Path, scope: str | None = None) -> str:
    return fetch_token(base_url=BASE, client_id=client_id, private_key_path=key, scope=scope, http=http)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_generated_private_key_is_written_0600_and_only_the_public_key_is_stored(
    engine: Engine, tmp_path: Path
) -> None:
    out = tmp_path / "keys" / "gp.jwk.json"
    with transaction(engine) as session:
        client = add_client(session, client_id="gp", organisation_id="A81001", role=Role.REFERRER, private_key_out=out)
    assert mode_of(out) == 0o600
    private = json.loads(out.read_text())
    assert private["kty"] == "EC" and private["crv"] == "P-384" and private["alg"] == "ES384"
    assert "d" in private
    (stored,) = client.jwks["keys"]
    assert not PRIVATE_MEMBERS & stored.keys()
    assert stored["kid"] == private["kid"]
    assert {k: v for k, v in private.items() if k != "d"} == stored
    with Session(engine) as session:
        row = session.get(Client, "gp")
        assert row is not None and not PRIVATE_MEMBERS & row.jwks["keys"][0].keys()


def test_a_generated_rs384_key_is_rsa_4096(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "rsa.jwk.json"
    with transaction(engine) as session:
        client = add_client(
            session, client_id="rsa", organisation_id="A81001", role=Role.REFERRER, private_key_out=out, alg="RS384"
        )
    (stored,) = client.jwks["keys"]
    assert stored["alg"] == "RS384" and stored["kty"] == "RSA"
    assert not PRIVATE_MEMBERS & stored.keys()
    assert RSAKey.import_key(stored).raw_value.key_size == 4096
    assert {"d", "p", "q"} <= json.loads(out.read_text()).keys()


def test_an_existing_key_file_is_never_overwritten(engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "taken.jwk.json"
    out.write_text("precious")
    with Session(engine) as session, pytest.raises(ValueError, match="already exists"):
        add_client(session, client_id="gp", organisation_id="A81001", role=Role.REFERRER, private_key_out=out)
    assert out.read_text() == "precious"
    with Session(engine) as session:
        assert session.get(Client, "gp") is None


def test_scopes_default_to_the_role_ceiling(engine: Engine, tmp_path: Path) -> None:
    with transaction(engine) as session:
        client = add_client(
            session, client_id="v", organisation_id="8VC01", role=Role.VCSE, private_key_out=tmp_path / "v.json"
        )
    assert set(client.scopes.split()) == set(ROLE_SCOPES[Role.VCSE])


def test_narrower_scopes_within_the_ceiling_are_accepted(engine: Engine, tmp_path: Path) -> None:
    with transaction(engine) as session:
        client = add_client(
            session,
            client_id="v",
            organisation_id="8VC01",
            role=Role.VCSE,
            scopes=["system/Task.r"],
            private_key_out=tmp_path / "v.json",
        )
    assert client.scopes == "system/Task.r"


@pytest.mark.parametrize(
    "scopes",
    [["system/ServiceRequest.c"], ["system/Task.rsud"], ["system/*.r"], ["openid"], []],
)
def test_scopes_outside_the_role_ceiling_are_refused(engine: Engine, tmp_path: Path, scopes: list[str]) -> None:
    out = tmp_path / "v.json"
    with Session(engine) as session, pytest.raises(ValueError):
        add_client(session, client_id="v", organisation_id="8VC01", role=Role.VCSE, scopes=scopes, private_key_out=out)
    assert not out.exists()


def test_an_unknown_organisation_or_a_duplicate_client_is_refused(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session, pytest.raises(ValueError, match="organisation"):
        add_client(session, client_id="x", organisation_id="NOPE", role=Role.VCSE, private_key_out=tmp_path / "x")
    with transaction(engine) as session:
        add_client(session, client_id="x", organisation_id="8VC01", role=Role.VCSE, private_key_out=tmp_path / "x1")
    with Session(engine) as session, pytest.raises(ValueError, match="already exists"):
        add_client(session, client_id="x", organisation_id="8VC01", role=Role.VCSE, private_key_out=tmp_path / "x2")


@pytest.mark.parametrize("client_id", ["", "has space", "a" * 101, "ünïcode"])
def test_client_ids_must_be_url_safe(engine: Engine, tmp_path: Path, client_id: str) -> None:
    with Session(engine) as session, pytest.raises(ValueError, match="client_id"):
        add_client(
            session, client_id=client_id, organisation_id="8VC01", role=Role.VCSE, private_key_out=tmp_path / "k"
        )


def test_exactly_one_key_source_is_required(engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session, pytest.raises(ValueError, match="exactly one"):
        add_client(session, client_id="x", organisation_id="8VC01", role=Role.VCSE)


def _public_jwks(alg: str = "ES384", **extra: str) -> tuple[dict, ECKey]:
    key = ECKey.generate_key("P-384", parameters={"alg": alg, "use": "sig"}, private=True)
    key.ensure_kid()
    return {"keys": [{**key.as_dict(private=False), **extra}]}, key


def test_a_client_supplied_public_jwks_is_registered_and_works(
    engine: Engine, http: TestClient, keys: TokenKeys, tmp_path: Path
) -> None:
    jwks, private = _public_jwks()
    with transaction(engine) as session:
        add_client(session, client_id="own-keys", organisation_id="8VC01", role=Role.VCSE, public_jwks=jwks)
    key_file = tmp_path / "own.jwk.json"
    key_file.write_text(json.dumps(private.as_dict(private=True)))
    token = get_token(http, "own-keys", key_file)
    assert verify_access_token(keys, token, issuer=BASE).organisation == "8VC01"


def test_a_public_jwks_with_private_parts_is_refused(engine: Engine) -> None:
    _, private = _public_jwks()
    with Session(engine) as session, pytest.raises(ValueError, match="private"):
        add_client(
            session,
            client_id="leaky",
            organisation_id="8VC01",
            role=Role.VCSE,
            public_jwks={"keys": [private.as_dict(private=True)]},
        )


def _small_rsa() -> dict:
    return {"keys": [{**RSAKey.generate_key(1024, private=True).as_dict(private=False), "alg": "RS384", "kid": "s"}]}


def _p256_as_es384() -> dict:
    return {"keys": [{**ECKey.generate_key("P-256", private=True).as_dict(private=False), "alg": "ES384", "kid": "p"}]}


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # the 1024-bit key is the point
@pytest.mark.parametrize(
    "make_jwks",
    [
        lambda: {"keys": []},
        lambda: {"nokeys": True},
        lambda: {"keys": ["not a jwk"]},
        lambda: _public_jwks(alg="ES256")[0],
        lambda: _public_jwks(use="enc")[0],
        lambda: {"keys": [{"kty": "EC", "crv": "P-384", "x": "bad", "y": "bad", "alg": "ES384", "kid": "k"}]},
        _small_rsa,
        _p256_as_es384,
    ],
    ids=["empty", "no-keys", "not-a-jwk", "es256", "enc-use", "bad-point", "rsa-1024", "p256-as-es384"],
)
def test_an_unusable_public_jwks_is_refused(engine: Engine, make_jwks: Callable[[], dict]) -> None:
    with Session(engine) as session, pytest.raises(ValueError):
        add_client(session, client_id="c", organisation_id="8VC01", role=Role.VCSE, public_jwks=make_jwks())


def test_rotate_key_keeps_the_old_key_valid_until_it_is_retired(
    engine: Engine, http: TestClient, tmp_path: Path
) -> None:
    first = tmp_path / "first.json"
    second = tmp_path / "second.json"
    third = tmp_path / "third.json"
    with transaction(engine) as session:
        add_client(session, client_id="gp", organisation_id="A81001", role=Role.REFERRER, private_key_out=first)
    first_kid = json.loads(first.read_text())["kid"]

    with transaction(engine) as session:
        second_kid = rotate_key(session, "gp", private_key_out=second)
    assert second_kid != first_kid
    assert mode_of(second) == 0o600
    assert json.loads(second.read_text())["kid"] == second_kid
    get_token(http, "gp", first)  # the old key still works during the switch-over
    get_token(http, "gp", second)

    with transaction(engine) as session:
        third_kid = rotate_key(session, "gp", private_key_out=third, retire_old=True)
    with Session(engine) as session:
        (only,) = list_clients(session)
    assert only["kids"] == [third_kid]
    get_token(http, "gp", third)
    for retired in (first, second):
        with pytest.raises(TokenError) as refused:
            get_token(http, "gp", retired)
        assert refused.value.error == "invalid_client"


def test_rotate_key_refuses_to_overwrite_and_unknown_clients(engine: Engine, tmp_path: Path) -> None:
    key = tmp_path / "gp.json"
    with transaction(engine) as session:
        add_client(session, client_id="gp", organisation_id="A81001", role=Role.REFERRER, private_key_out=key)
    with Session(engine) as session:
        with pytest.raises(ValueError, match="already exists"):
            rotate_key(session, "gp", private_key_out=key)
        with pytest.raises(ValueError, match="not registered"):
            rotate_key(session, "nobody", private_key_out=tmp_path / "new.json")


def test_a_disabled_client_is_refused_a_token(engine: Engine, http: TestClient, tmp_path: Path) -> None:
    key = tmp_path / "gp.json"
    with transaction(engine) as session:
        add_client(session, client_id="gp", organisation_id="A81001", role=Role.REFERRER, private_key_out=key)
    get_token(http, "gp", key)
    with transaction(engine) as session:
        disable_client(session, "gp")
    with Session(engine) as session:
        assert get_active_client(session, "gp") is None
        assert session.get(Client, "gp") is not None
    with pytest.raises(TokenError) as refused:
        get_token(http, "gp", key)
    assert refused.value.error == "invalid_client"
    with Session(engine) as session, pytest.raises(ValueError, match="not registered"):
        disable_client(session, "nobody")


def test_list_clients_shows_role_scopes_state_and_kids(engine: Engine, tmp_path: Path) -> None:
    with transaction(engine) as session:
        add_client(
            session,
            client_id="v",
            organisation_id="8VC01",
            role=Role.VCSE,
            scopes=["system/Task.rs"],
            private_key_out=tmp_path / "v.json",
        )
        add_client(session, client_id="g", organisation_id="A81001", role=Role.REFERRER, private_key_out=tmp_path / "g")
        disable_client(session, "v")
    with Session(engine) as session:
        rows = list_clients(session)
    kid = json.loads((tmp_path / "v.json").read_text())["kid"]
    assert [r["client_id"] for r in rows] == ["g", "v"]
    assert rows[1] == {
        "client_id": "v",
        "organisation": "8VC01",
        "role": "vcse",
        "scopes": ["system/Task.rs"],
        "active": False,
        "pending_approval": False,
        "may_assert_end_user": False,
        "kids": [kid],
    }
    assert rows[0]["active"] is True
