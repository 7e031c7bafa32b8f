"""Webhook endpoints and their outbox: tidings' own events, told to HTTPS endpoints.

An event is written to ``webhook_delivery`` (one row per subscribed endpoint) in the same
transaction as the fact it reports, so a crash can lose neither; the dispatcher beside each
worker sends the rows and keeps each one's attempts with the outbox shape the inbound events
use (:mod:`tidings.store.outbox`): per-row backoff, set aside after a limit, requeued by ops.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, id_column_type, json_column_type, utcnow


class WebhookEndpoint(SQLModel, table=True):
    """An HTTPS endpoint subscribed to some event types, of one app (``app_id``) or, for the
    admin's, of every app (None). Its signing secret is sealed like provider credentials."""

    __tablename__ = "webhook_endpoint"

    id: str = Field(sa_column=Column(String(40), primary_key=True))
    url: str = Field(sa_column=Column(Text, nullable=False))
    app_id: str | None = Field(default=None, sa_column=Column(String(64)))
    event_types: list[str] = Field(sa_column=Column(json_column_type(), nullable=False))
    description: str | None = Field(default=None, sa_column=Column(String(200)))
    # ``enc:<fernet token>`` under the secret key (tidings.store.secrets)
    secret: str = Field(sa_column=Column(Text, nullable=False))
    # who made it: "admin", or the app whose key did
    created_by: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    # paused: its events keep queuing and are sent once it is resumed
    paused_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class WebhookDelivery(SQLModel, table=True):
    """One event bound for one endpoint. ``event_id`` (the ``webhook-id`` header) is the same
    for every endpoint and every attempt, derived from what the event is about, so a fact
    recorded twice queues once and a receiver can drop a repeat."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_delivery_event"),
        Index("ix_webhook_delivery_outbox", "forwarded_at", "forward_failed_at", "id"),
        Index("ix_webhook_delivery_endpoint", "endpoint_id", "id"),
        Index("ix_webhook_delivery_profile", "profile_id"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(id_column_type(), primary_key=True, autoincrement=True)
    )
    endpoint_id: str = Field(
        sa_column=Column(
            String(40), ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), nullable=False
        )
    )
    event_id: str = Field(sa_column=Column(String(64), nullable=False))
    event_type: str = Field(sa_column=Column(String(32), nullable=False))
    # the profile the event is about, if any: an erasure rewrites it in the payload too
    profile_id: str | None = Field(default=None, sa_column=Column(String(128)))
    # the request body as sent: {id, type, created_at, app_id, data}
    payload: dict[str, Any] = Field(sa_column=Column(json_column_type(), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    # the outbox shape (tidings.store.outbox): sent when the endpoint answered 2xx
    forwarded_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    forward_attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    forward_failures: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    forward_failed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
