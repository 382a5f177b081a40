"""Runtime settings from the environment (prefix SPGW_), with safe defaults for the embedded set-up."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1 << 20


class Settings(BaseSettings):
    """Everything configurable; secrets come from the environment or files under the data folder, never the repo."""

    model_config = SettingsConfigDict(env_prefix="SPGW_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Folder for the SQLite database and generated keys")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir")
    max_body_bytes: int = Field(default=MIB, gt=0, description="Larger request bodies are refused with 413")
    public_base_url: str | None = Field(
        default=None, description="External base URL (token audience); default: taken from the request"
    )
    access_token_ttl: int = Field(default=300, ge=30, le=3600, description="Access token lifetime in seconds")
    assertion_max_lifetime: int = Field(default=300, description="Longest accepted client assertion (exp - now)")
    ig_reads_clinical: bool = Field(default=False, description="May IG officers read clinical payloads?")
    delivery_max_attempts: int = Field(default=8, ge=1, description="Attempts before a delivery is dead-lettered")
    delivery_backoff_base: float = Field(default=2.0, gt=0, description="First retry delay in seconds")
    delivery_backoff_cap: float = Field(default=3600.0, gt=0, description="Longest retry delay in seconds")
    delivery_timeout: float = Field(default=10.0, gt=0)
    audit_origin: str = Field(default="sp-gateway.local/audit", description="Checkpoint origin line")
    audit_retention_days: int = Field(default=3650, ge=1, description="Days an audit entry's content is kept online")
    page_size_default: int = 50
    page_size_max: int = 500
    mllp_allowed_sources: str = Field(default="", description="MLLP senders: 'APP^FAC=client_id,...'")
    console_idle_minutes: int = Field(default=15, ge=1, le=120, description="Console sign-out after this idle time")
    console_max_failures: int = Field(
        default=5, ge=1, description="Failed console sign-ins per username (or 4x per address) before a pause"
    )
    console_failure_window_minutes: int = Field(default=15, ge=1, description="The window those failures count in")
    # "A referral has arrived" emails to VCSE hosts (gateway/inbox/notify.py); no SMTP host, no emails.
    smtp_host: str | None = Field(default=None, description="SMTP server for inbox notification emails")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="STARTTLS (port 587), implicit TLS (465), or none (a local relay only)"
    )
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str = Field(default="sp-gateway <no-reply@sp-gateway.invalid>", description="The emails' From")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @cached_property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'spgw.db'}"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"
