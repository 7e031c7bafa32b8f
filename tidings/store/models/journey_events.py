"""What happened to profiles inside journeys, beside the send ledger: sends held for quiet
hours (``postponed``), goal exits, cancellations, and entries into journeys that listen for
custom events (the index that routes those events to the right cohort)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, String, Text
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, id_column_type, utcnow


class JourneyEvent(SQLModel, table=True):
    __tablename__ = "journey_event"
    __table_args__ = (
        Index("ix_journey_event_run", "run_id", "kind", "node_id"),
        Index("ix_journey_event_profile", "profile_id", "kind"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(id_column_type(), primary_key=True, autoincrement=True)
    )
    # workflow id + the workflow's own key for the event: a retried activity writes it once
    event_key: str = Field(sa_column=Column(String(500), nullable=False, unique=True))
    run_id: str = Field(sa_column=Column(String(200), nullable=False))
    journey_id: str = Field(sa_column=Column(String(64), nullable=False))
    workflow_id: str = Field(sa_column=Column(String(255), nullable=False))
    profile_id: str = Field(sa_column=Column(String(128), nullable=False))
    node_id: str | None = Field(default=None, sa_column=Column(String(64)))
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    detail: str | None = Field(default=None, sa_column=Column(Text))
    occurred_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
