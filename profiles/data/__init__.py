"""Profile data as JSON: the social prescribing referral value set, the code bindings and
allowed values the referral and consent rules read, and the supported message events.

Kept as data, not code, so that a reviewer can see every allowed value in one place and
a deployment can widen a list (e.g. the accepted BaRS use cases) without a code change.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any


@cache
def load(name: str) -> Any:
    """Returns the parsed JSON data file `name` from this folder (read once per process)."""
    return json.loads(files(__name__).joinpath(name).read_text(encoding="utf-8"))
