"""Journeys started on a schedule. Temporal's Schedule (same id) fires them and knows whether
one is paused and when it fires next; this row keeps what the schedule was asked for and the
outcome of its latest firing, so a list never depends on Temporal's visibility store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, json_column_type, utcnow


class JourneySchedule(SQLModel, table=True):
    __tablename__ = "journey_schedule"
    __table_args__ = (Index("ix_journey_schedule_journey", "journey_id"),)

    id: str = Field(sa_column=Column(String(100), primary_key=True))
    journey_id: str = Field(sa_column=Column(String(64), nullable=False))
    # None: the journey's latest version when the schedule fires
    version: int | None = Field(default=None, sa_column=Column(Integer))
    # once, daily, weekly or every
    kind: str = Field(sa_column=Column(String(16), nullable=False))
    # once: a local date and time (2026-12-24T09:00); daily and weekly: a local time (09:00)
    at: str | None = Field(default=None, sa_column=Column(String(32)))
    weekday: str | None = Field(default=None, sa_column=Column(String(16)))
    # every: a duration (6h)
    every: str | None = Field(default=None, sa_column=Column(String(32)))
    time_zone: str = Field(sa_column=Column(String(64), nullable=False))
    audience: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(json_column_type(), nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    last_fired_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    last_run_id: str | None = Field(default=None, sa_column=Column(String(200)))
    # why the latest firing started no run (the journey gone, no profile matching)
    last_error: str | None = Field(default=None, sa_column=Column(Text))
