"""Checkpoints published to a witness outside the database: files, HTTPS endpoint, reading back the
newest with its signature checked, and signing only when the log grew."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import respx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.witness import LATEST, WitnessError, check_url, checkpoint_and_publish, checkpoint_due, latest, publish
from gateway.integrity import audit_signer
from gateway.schema import init_db
from tests.support.audit_log import fill_log

KEY = Ed25519PrivateKey.generate()
ORIGIN = "sp-gateway.test/audit"


def note(size: int, key: Ed25519PrivateKey = KEY) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, bytes([size % 256]) * 32), ORIGIN, key)


def test_publish_keeps_every_note_and_the_newest_as_latest(tmp_path: Path) -> None:
    folder = tmp_path / "witness"
    publish(note(3), 3, folder)
    publish(note(10), 10, folder)
    assert (folder / "checkpoint-3.note").read_text() == note(3)
    assert (folder / LATEST).read_text() == note(10)
    newest = latest(folder, ORIGIN, KEY.public_key())
    assert newest is not None and newest.checkpoint.size == 10 and newest.path.name == "checkpoint-10.note"


def test_an_empty_or_missing_witness_holds_nothing(tmp_path: Path) -> None:
    assert latest(tmp_path / "absent", ORIGIN, KEY.public_key()) is None
    (tmp_path / "empty").mkdir()
    assert latest(tmp_path / "empty", ORIGIN, KEY.public_key()) is None


def test_a_note_signed_by_another_key_is_refused_not_ignored(tmp_path: Path) -> None:
    publish(note(5, Ed25519PrivateKey.generate()), 5, tmp_path)
    with pytest.raises(WitnessError, match=r"checkpoint-5\.note"):
        latest(tmp_path, ORIGIN, KEY.public_key())


def test_an_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(WitnessError, match="cannot write to the witness folder"):
        publish(note(1), 1, blocker / "witness")


def test_each_note_is_posted_to_the_https_endpoint(tmp_path: Path) -> None:
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        route = router.post("https://witness.example.nhs.uk/checkpoints").mock(return_value=httpx.Response(201))
        publish(note(7), 7, tmp_path, "https://witness.example.nhs.uk/checkpoints")
    sent = route.calls.last.request
    assert sent.content == note(7).encode()
    assert sent.headers["content-type"].startswith("text/plain")


def test_an_endpoint_refusal_is_an_error(tmp_path: Path) -> None:
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        router.post("https://witness.example.nhs.uk/checkpoints").mock(return_value=httpx.Response(503))
        with pytest.raises(WitnessError, match="HTTP 503"):
            publish(note(7), 7, tmp_path, "https://witness.example.nhs.uk/checkpoints")


def test_plain_http_is_refused_except_on_loopback() -> None:
    with pytest.raises(WitnessError, match="https"):
        check_url("http://witness.example.nhs.uk/checkpoints")
    check_url("http://127.0.0.1:9000/checkpoints")
    check_url("https://witness.example.nhs.uk/checkpoints")


def test_a_checkpoint_is_due_only_when_the_log_grew(settings, engine: Engine, tmp_path: Path) -> None:
    init_db(engine)
    assert not checkpoint_due(engine)  # an empty log has nothing to witness
    fill_log(engine, 5)
    assert checkpoint_due(engine)
    done = checkpoint_and_publish(engine, audit_signer(settings), tmp_path)
    assert done is not None and "\n5\n" in done[0]
    assert not checkpoint_due(engine)  # only the signing's own entry was added since
    assert checkpoint_and_publish(engine, audit_signer(settings), tmp_path) is None
    fill_log(engine, 1)
    assert checkpoint_due(engine)
