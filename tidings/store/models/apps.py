"""Apps: a mobile app with its APNs and/or FCM credentials."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Float, Integer, String, Text
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, json_column_type, utcnow


class App(SQLModel, table=True):
    """A mobile app. Secrets are stored sealed (see tidings.store.secrets), never in clear.

    ``credentials_version`` grows on every credential change; workers key their provider
    clients on it, so a rotation takes effect on the next batch without a restart.
    """

    __tablename__ = "app"

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    # Non-secret provider settings: APNs team/key/bundle/environment/auth, FCM project id.
    apns_config: dict[str, Any] | None = Field(
        default=None, sa_column=Column(json_column_type(), nullable=True)
    )
    fcm_config: dict[str, Any] | None = Field(
        default=None, sa_column=Column(json_column_type(), nullable=True)
    )
    # Sealed secrets: the .p8 key or certificate PEM, and the FCM service-account JSON.
    apns_secret: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    fcm_secret: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    credentials_version: int = Field(
        default=1, sa_column=Column(Integer, nullable=False, default=1)
    )
    # Set when a provider reports a configuration fault of the credentials or the app's setup
    # (bad key, certificate, topic, project): sends to that provider stop until the
    # credentials change or an admin resumes them. JSON {"reason", "since"}, read and written
    # by tidings.store.apps (ProviderStop). A fault of one push (its payload) stops nothing.
    apns_fault: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    fcm_fault: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Messages per second this app may send, across every worker process (None: no limit).
    # Enforced through a token bucket in the store (send_rate_bucket).
    send_rate_per_s: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
