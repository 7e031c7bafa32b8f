"""Custom events posted by mobile backends (``POST /v1/events``): stored first, then
forwarded to journeys (a trigger starts one; a goal or a wait_for in a running one reads it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, id_column_type, json_column_type, utcnow


class CustomEvent(SQLModel, table=True):
    """``forwarded_at`` is NULL until every journey the event concerns has been started or
    signalled: the table is the events' outbox (DESIGN.md decision 6), drained by the same
    forwarder as the interactions' and with the same per-row backoff and set-aside."""

    __tablename__ = "custom_event"
    __table_args__ = (
        Index("ix_custom_event_outbox", "forwarded_at", "received_at"),
        Index("ix_custom_event_profile", "profile_id", "name"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(id_column_type(), primary_key=True, autoincrement=True)
    )
    event_id: str = Field(sa_column=Column(String(128), nullable=False, unique=True))
    profile_id: str = Field(sa_column=Column(String(128), nullable=False))
    name: str = Field(sa_column=Column(String(128), nullable=False))
    properties: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(json_column_type(), nullable=False)
    )
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    received_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    forwarded_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    # the app whose key posted it (None: the admin): an app's key sees only its own
    app_id: str | None = Field(default=None, sa_column=Column(String(64)))
    # every forwarding attempt, whatever became of it
    forward_attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    # attempts Temporal refused for this event itself (not an outage): they back off per row,
    # and after the forwarder's limit the event is set aside (``forward_failed_at``)
    forward_failures: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    forward_failed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    # what forwarding did: {"started": [journey ids], "signalled": [workflow ids],
    # "skipped": {journey id: why the profile did not enter}}
    outcome: dict[str, Any] | None = Field(
        default=None, sa_column=Column(json_column_type(), nullable=True)
    )
    # the W3C traceparent of the request that posted it (None: tracing off), so forwarding
    # continues that trace
    traceparent: str | None = Field(default=None, sa_column=Column(String(64)))
