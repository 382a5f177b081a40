"""What the running app holds: settings, the database engine and the gateway's keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine

from gateway.auth.keys import TokenKeys
from gateway.auth.tokens import VerifiedTokens
from gateway.settings import Settings


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    token_keys: TokenKeys
    verified_tokens: VerifiedTokens = field(default_factory=VerifiedTokens)
