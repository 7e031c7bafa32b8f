"""Interactions reported by mobile backends: stored first, then forwarded to journeys."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, id_column_type, json_column_type, utcnow


class InteractionKind(StrEnum):
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    DISMISSED = "dismissed"


class InteractionStatus(StrEnum):
    MATCHED = "matched"  # its tracking id names a delivery
    UNMATCHED = "unmatched"  # kept for inspection, never forwarded


NO_APP_SCOPE = ""  # the scope of a report no app owns: the admin's, of an unknown push


class Interaction(SQLModel, table=True):
    """``forwarded_at`` is NULL until the forwarder has signalled the owning workflow: the
    table is the outbox of decision 6, so nothing is lost while Temporal is down.

    A report is idempotent on its event id *within its scope*, the app whose push it is (or
    that reported it, for an unknown tracking id): one app's event ids never collide with
    another's."""

    __tablename__ = "interaction"
    __table_args__ = (
        UniqueConstraint("scope", "event_id", name="uq_interaction_scope_event"),
        Index("ix_interaction_tracking", "tracking_id"),
        Index("ix_interaction_outbox", "status", "forwarded_at"),
        # a segment's interaction condition asks, profile by profile, what each did lately
        Index("ix_interaction_profile", "profile_id", "kind", "occurred_at"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(id_column_type(), primary_key=True, autoincrement=True)
    )
    scope: str = Field(default=NO_APP_SCOPE, sa_column=Column(String(64), nullable=False))
    event_id: str = Field(sa_column=Column(String(128), nullable=False))
    tracking_id: str = Field(sa_column=Column(String(64), nullable=False))
    kind: InteractionKind = Field(sa_column=Column(String(16), nullable=False))
    action_id: str | None = Field(default=None, sa_column=Column(String(128)))
    status: InteractionStatus = Field(sa_column=Column(String(16), nullable=False))
    delivery_id: int | None = Field(default=None, sa_column=Column(id_column_type()))
    app_id: str | None = Field(default=None, sa_column=Column(String(64)))
    profile_id: str | None = Field(default=None, sa_column=Column(String(128)))
    workflow_id: str | None = Field(default=None, sa_column=Column(String(255)))
    node_id: str | None = Field(default=None, sa_column=Column(String(64)))
    source: str = Field(default="api", sa_column=Column(String(32), nullable=False))
    details: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(json_column_type(), nullable=False)
    )
    occurred_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    received_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    forwarded_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    # every signal attempt, whatever became of it
    forward_attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    # attempts Temporal refused for this row itself (not an outage): they back off per row,
    # and after the forwarder's limit the row is given up (``forward_failed_at``)
    forward_failures: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    next_attempt_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    forward_failed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
