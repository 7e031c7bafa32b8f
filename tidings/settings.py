"""Settings for every tidings process, read from TIDINGS_* environment variables.

Temporal's own variables (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*,
TEMPORAL_PROFILE and the client config file) are deliberately *not* modelled here: they are read
by ``temporalio.envconfig`` exactly as Temporal's CLI and SDKs read them (see tidings.temporal).

Nothing here does I/O at import time; ``Settings()`` only reads the environment and an optional
``.env`` file when it is constructed.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    """Everything a tidings process needs to know about its environment."""

    model_config = SettingsConfigDict(
        env_prefix="TIDINGS_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    home: Path = Field(
        default=Path(".tidings"),
        description="Directory for embedded state: SQLite file, Temporal dev-server database, "
        "simulator certificates, the generated secret key.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store. Default: SQLite at <home>/tidings.db. "
        "postgresql://user@host/db selects PostgreSQL (driver psycopg 3).",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key that encrypts provider credentials at rest. Default: a key "
        "generated once into <home>/secret.key (fine for a laptop, set it explicitly in "
        "production so every API and worker process shares it).",
    )
    task_queue: str = "tidings"
    log_level: LogLevel = "INFO"

    # --- API -------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8400
    admin_key: SecretStr | None = Field(
        default=None,
        description="Admin API key (manages apps, profiles, journeys). Default: generated once "
        "into <home>/admin.key.",
    )

    # --- push providers ----------------------------------------------------------------------
    apns_endpoint: str | None = Field(
        default=None,
        description="host:port to open APNs connections to instead of Apple's hosts; TLS still "
        "verifies Apple's host name. Used to reach the simulators.",
    )
    fcm_endpoint: str | None = Field(
        default=None,
        description="Base URL (https://host:port) that replaces https://fcm.googleapis.com for "
        "sends. Used to reach the simulators.",
    )
    provider_ca_file: Path | None = Field(
        default=None,
        description="PEM bundle trusted for provider TLS instead of the system store.",
    )
    send_concurrency: int = Field(
        default=256, ge=1, le=1000, description="Provider requests in flight per app and worker."
    )
    send_timeout_s: float = Field(default=15.0, gt=0, description="Per-request provider timeout.")

    # --- engine -------------------------------------------------------------------------------
    cohort_size: int = Field(default=500, ge=1, le=5000)
    cohort_window: int = Field(
        default=8, ge=1, le=1000, description="Cohort workflows running at once per journey run."
    )
    audience_page_size: int = Field(default=2000, ge=1, le=50_000)
    delivery_heartbeat_timeout_s: float = Field(default=30.0, gt=0)
    delivery_max_attempts: int = Field(default=8, ge=1, le=100)
    delivery_initial_backoff_s: float = Field(default=1.0, gt=0)
    delivery_max_backoff_s: float = Field(default=300.0, gt=0)
    stale_after_days: int = Field(
        default=60, ge=1, description="Tokens not refreshed for this many days are not targeted."
    )
    # Frequency cap (across all journeys; a journey may bypass it): delivered pushes per
    # profile over rolling windows. Unset: no limit in that window.
    frequency_cap_24h: int | None = Field(default=None, ge=0)
    frequency_cap_7d: int | None = Field(default=None, ge=0)
    frequency_cap_30d: int | None = Field(default=None, ge=0)

    @field_validator("database_url")
    @classmethod
    def _reject_blank_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("TIDINGS_DATABASE_URL is set but empty")
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        """The store URL, defaulting to SQLite under the home directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'tidings.db').resolve()}"

    @property
    def delivery_heartbeat_timeout(self) -> timedelta:
        return timedelta(seconds=self.delivery_heartbeat_timeout_s)

    @property
    def api_base_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"
