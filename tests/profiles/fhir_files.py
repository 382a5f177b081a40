"""Loads the FHIR test fixtures in tests/fixtures/fhir (see SOURCES.md there)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"


@cache
def _read(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def load(name: str) -> dict[str, Any]:
    """Returns a fresh copy of a fixture, so a test may change it."""
    return copy.deepcopy(_read(name))


def entry_index(bundle: dict[str, Any], resource_type: str) -> int:
    """Returns the index of the first entry of this resource type."""
    return next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == resource_type)
