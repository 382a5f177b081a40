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
        default=None,
        description="External base URL (token audience and issuer); required unless serving on loopback",
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
    mllp_allowed_ips: str = Field(default="", description="Addresses/networks that may connect to MLLP (all if empty)")
    mllp_tls_clients: str = Field(default="", description="MLLP TLS client certificates: 'CN=client_id,...'")
    mllp_max_connections: int = Field(default=64, ge=1, description="MLLP connections served at once")
    mllp_message_deadline: float = Field(default=60.0, gt=0, description="Seconds for one MLLP message to arrive whole")
    http_body_deadline: float = Field(default=60.0, gt=0, description="Seconds for one HTTP request body to arrive")
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated proxy addresses/networks whose X-Forwarded-For/-Proto are believed (none)",
    )
    token_failures_per_client: int = Field(default=10, ge=1, description="Failed token requests per client id a window")
    token_failures_per_address: int = Field(default=30, ge=1, description="Failed token requests per address a window")
    token_failure_window: int = Field(default=60, ge=1, description="Seconds in a token rate-limit window")
    allow_insecure_endpoints: bool = Field(
        default=False,
        description="Allow http:// and loopback/private webhook and FHIR endpoints (demo and tests only)",
    )
    log_format: Literal["text", "json"] = Field(default="text", description="Log lines as text or one JSON object")
    ready_outbox_max_lag: float = Field(
        default=300.0, gt=0, description="/readyz fails when a due delivery has waited this long for a worker"
    )
    console_idle_minutes: int = Field(default=15, ge=1, le=120, description="Console sign-out after this idle time")
    console_max_failures: int = Field(
        default=5, ge=1, description="Failed console sign-ins per username (or 4x per address) before a pause"
    )
    console_failure_window_minutes: int = Field(default=15, ge=1, description="The window those failures count in")
    sandbox: bool = Field(
        default=False, description="Serve POST /vcse/v1/sandbox/referrals (synthetic referrals for CRM vendors)"
    )
    checkpoint_interval_minutes: int = Field(
        default=60, ge=0, description="Sign and publish an audit checkpoint this often (0: never automatically)"
    )
    witness_dir: Path | None = Field(
        default=None, description="Folder the checkpoints are published to; default <data_dir>/witness"
    )
    witness_url: str | None = Field(default=None, description="HTTPS endpoint each checkpoint note is POSTed to")
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

    @property
    def witness_folder(self) -> Path:
        return (self.witness_dir or self.data_dir / "witness").expanduser().resolve()
