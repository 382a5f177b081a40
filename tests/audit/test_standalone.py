"""audit/ stands on its own: it imports nothing from the gateway, and signs with a key it is handed."""

from __future__ import annotations

import ast
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from audit.checkpoint import Signer, load_verifier_key, parse_and_verify
from audit.proofs import make_checkpoint, tree_head
from gateway.schema import init_db
from tests.support.audit_log import fill_log

AUDIT = Path(__file__).resolve().parents[2] / "audit"


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_module_of_audit_imports_the_gateway() -> None:
    offenders = {
        f"{path.name}: {module}"
        for path in AUDIT.glob("*.py")
        for module in _imported_modules(path)
        if module == "gateway" or module.startswith("gateway.")
    }
    assert offenders == set()


def test_a_checkpoint_is_signed_with_the_key_it_is_handed(engine: Engine) -> None:
    init_db(engine)
    fill_log(engine, 5)
    signer = Signer("audit.example.test/log", Ed25519PrivateKey.generate())
    note = make_checkpoint(engine, signer)
    checkpoint = parse_and_verify(note, *load_verifier_key(signer.verifier_key()))
    assert (checkpoint.size, checkpoint.root) == tree_head(engine, 5)
