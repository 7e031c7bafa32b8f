"""Settings for every tidings process, read from TIDINGS_* environment variables.

Temporal's own variables (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*,
TEMPORAL_PROFILE and the client config file) are deliberately *not* modelled here: they are read
by ``temporalio.envconfig`` exactly as Temporal's CLI and SDKs read them (see
tidings.temporal.client).

Nothing here does I/O at import time; ``Settings()`` only reads the environment and an optional
``.env`` file when it is constructed.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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

    env: Literal["development", "production"] | None = Field(
        default=None,
        description="`production` makes every process refuse to start without TEMPORAL_ADDRESS, "
        "TIDINGS_SECRET_KEY and TIDINGS_ADMIN_KEY (never a dev server, never a generated key "
        "file). Unset, a PostgreSQL TIDINGS_DATABASE_URL means production too; `development` "
        "says explicitly that PostgreSQL is a developer's own (beside an embedded Temporal).",
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
        description="Fernet key that encrypts provider credentials at rest and signs tracked "
        "links; several keys, comma-separated, newest first, while rotating (`tidings keys "
        "generate`, `tidings keys rotate`). Default: a key generated once into "
        "<home>/secret.key (fine for a laptop; required in production so every API and worker "
        "process shares it).",
    )
    task_queue: str = Field(
        default="tidings",
        description="Task queue of the journey interpreter (workflows, audience and records "
        "activities).",
    )
    triggered_task_queue: str | None = Field(
        default=None,
        description="Task queue of triggered entries (a cohort of one each), polled by every "
        "interpreter worker beside its own, so an entry's workflow tasks never queue behind "
        "a broadcast's. Default: the interpreter's queue name followed by `-triggered`.",
    )
    delivery_task_queue: str | None = Field(
        default=None,
        description="Task queue of the delivery activities, so delivery workers can scale on "
        "their own (`tidings worker --queues delivery`). Default: the interpreter's queue.",
    )
    log_level: LogLevel = Field(
        default="INFO", description="DEBUG, INFO, WARNING or ERROR, in any case."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: Rich on a terminal, plain lines elsewhere; json: one JSON object a "
        "line (request, app, run and workflow ids where known), uvicorn's lines included.",
    )

    # --- observability -------------------------------------------------------------------------
    worker_metrics_address: str | None = Field(
        default=None,
        description="host:port where a worker serves /metrics, /healthz and /readyz "
        "(0.0.0.0:9464). Unset: a worker serves none of them.",
    )
    temporal_metrics_address: str | None = Field(
        default=None,
        description="host:port where a worker's Temporal SDK serves its own Prometheus "
        "metrics (0.0.0.0:9465): task latencies, schedule-to-start, slots. Unset: none.",
    )

    # --- API -------------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8400
    admin_key: SecretStr | None = Field(
        default=None,
        description="Admin API key (manages apps, profiles, journeys). Default: generated once "
        "into <home>/admin.key.",
    )

    # ingestion
    public_url: str | None = Field(
        default=None,
        description="The API's address as devices reach it (https://push.example.com). Set, "
        "a push's `link` is a tracked redirect through <public_url>/l/... that records the "
        "click (`originalLink` keeps the raw link); unset, `link` is the raw link.",
    )
    callback_allowed: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts and networks (comma-separated: callbacks.internal,10.1.0.0/16) that "
        "compat registration callbacks (x-ms-callback-url) and webhook endpoints may reach "
        "although they are loopback, link-local or private; every other such address is "
        "refused. A webhook endpoint on such a host may be http; every other must be https.",
    )
    callback_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="How long a registration callback, or one webhook request, may take.",
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

    # credentials and faults
    check_credentials_on_save: bool = Field(
        default=True,
        description="Check new app credentials against the providers (or the simulators the "
        "endpoints point at) when an app is saved: a definite problem refuses the save naming "
        "the wrong field, an inconclusive one is a warning. Turn off where the API cannot reach "
        "the providers (air-gapped setups); POST /v1/apps/{id}/check still runs it on demand.",
    )
    credential_check_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="How long a credential check waits per provider."
    )
    apns_token_updates_retry_s: float = Field(
        default=1200.0,
        ge=0,
        description="Least delay before a push APNs answered 429 TooManyProviderTokenUpdates is "
        "retried (Apple refuses a team's token updates more often than every 20 minutes).",
    )

    # --- engine -------------------------------------------------------------------------------
    cohort_size: int = Field(default=1000, ge=1, le=5000)
    cohort_window: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="Cohort workflows of a journey run taking steps at once; a cohort parked in "
        "a wait of cohort_parks_after_s or longer holds no place.",
    )
    cohort_parks_after_s: float = Field(
        default=60.0,
        gt=0,
        description="A cohort whose every profile waits this long or longer (a delay, a wait "
        "for an interaction) gives its place in the run's window to the next cohort, so a long "
        "audience is not held back by the waits of the cohorts before it.",
    )
    audience_page_size: int = Field(default=2000, ge=1, le=50_000)
    delivery_heartbeat_timeout_s: float = Field(default=30.0, gt=0)
    delivery_retry_horizon_s: float = Field(
        default=3600.0,
        gt=0,
        description="How long a push node retries transient provider failures (429, 5xx, lost "
        "connections, answers that never came) before recording the push failed, unless the "
        "node sets its own retry_horizon; a shorter TTL ends retries sooner.",
    )
    delivery_initial_backoff_s: float = Field(default=1.0, gt=0)
    delivery_max_backoff_s: float = Field(default=300.0, gt=0)
    workflow_cache_size: int | None = Field(
        default=None,
        ge=0,
        description="Workflow runs a worker keeps in memory between their tasks (Temporal's "
        "max_cached_workflows; default the SDK's). 0 replays each workflow's history on every "
        "task: slower, and proof that the workflows are deterministic.",
    )
    worker_shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, how long a worker lets the sends in flight finish before it "
        "cancels them (the ledger makes a cancelled batch safe to retry elsewhere).",
    )
    stale_after_days: int = Field(
        default=60, ge=1, description="Tokens not refreshed for this many days are not targeted."
    )
    # Frequency cap (across all journeys; a journey may bypass it): delivered pushes per
    # profile over rolling windows. Unset: no limit in that window.
    frequency_cap_24h: int | None = Field(default=None, ge=0)
    frequency_cap_7d: int | None = Field(default=None, ge=0)
    frequency_cap_30d: int | None = Field(default=None, ge=0)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _any_case(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str):
            value = value.strip()
            return value.upper() if info.field_name == "log_level" else value.lower()
        return value

    @field_validator("database_url")
    @classmethod
    def _reject_blank_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("TIDINGS_DATABASE_URL is set but empty")
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env_name(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("public_url")
    @classmethod
    def _absolute_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("TIDINGS_PUBLIC_URL must be an absolute http(s) URL, no query")
        return value.strip().rstrip("/")

    @field_validator("callback_allowed", mode="before")
    @classmethod
    def _split_allowed(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("callback_allowed")
    @classmethod
    def _hosts_or_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            if "/" in item:
                try:
                    ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"TIDINGS_CALLBACK_ALLOWED: {item!r} is no network") from None
            elif any(ch.isspace() for ch in item) or "://" in item:
                raise ValueError(f"TIDINGS_CALLBACK_ALLOWED: {item!r} is no host name")
        return [item.lower() for item in value]

    @cached_property
    def resolved_database_url(self) -> str:
        """The store URL, defaulting to SQLite under the home directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'tidings.db').resolve()}"

    @property
    def production(self) -> bool:
        """Production mode: asked for, or implied by a PostgreSQL store."""
        if self.env is not None:
            return self.env == "production"
        url = (self.database_url or "").strip().lower()
        return url.startswith(("postgresql", "postgres:"))

    def secret_keys(self) -> list[bytes]:
        """The configured secret keys, newest first (empty: none configured)."""
        if self.secret_key is None:
            return []
        text = self.secret_key.get_secret_value().replace(",", " ")
        return [key.encode() for key in text.split()]

    @property
    def triggered_queue(self) -> str:
        return self.triggered_task_queue or f"{self.task_queue}-triggered"

    @property
    def delivery_queue(self) -> str:
        return self.delivery_task_queue or self.task_queue

    @property
    def delivery_heartbeat_timeout(self) -> timedelta:
        return timedelta(seconds=self.delivery_heartbeat_timeout_s)

    @property
    def api_base_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"
