"""Journeys, their stored versions, and journey runs (each holding its definition snapshot)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, json_column_type, utcnow


class Journey(SQLModel, table=True):
    __tablename__ = "journey"

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    latest_version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class JourneyVersion(SQLModel, table=True):
    """An immutable version of a journey definition. Editing a journey adds a version."""

    __tablename__ = "journey_version"

    journey_id: str = Field(
        sa_column=Column(String(64), ForeignKey("journey.id", ondelete="CASCADE"), primary_key=True)
    )
    version: int = Field(sa_column=Column(Integer, primary_key=True))
    definition: dict[str, Any] = Field(sa_column=Column(json_column_type(), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class JourneyRun(SQLModel, table=True):
    """One start of a journey. ``id`` is the Temporal workflow id of the run workflow."""

    __tablename__ = "journey_run"
    __table_args__ = (Index("ix_journey_run_journey", "journey_id", "started_at"),)

    id: str = Field(sa_column=Column(String(200), primary_key=True))
    journey_id: str = Field(sa_column=Column(String(64), nullable=False))
    journey_version: int | None = Field(default=None, sa_column=Column(Integer))
    # The definition as it was when the run started: edits never change runs in flight.
    definition: dict[str, Any] = Field(sa_column=Column(json_column_type(), nullable=False))
    entry: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(json_column_type(), nullable=False)
    )
    status: RunStatus = Field(
        default=RunStatus.RUNNING, sa_column=Column(String(16), nullable=False)
    )
    summary: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(json_column_type(), nullable=False)
    )
    error: str | None = Field(default=None, sa_column=Column(Text))
    started_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class RunMember(SQLModel, table=True):
    """An explicitly listed audience member of a run, paged by the run workflow (a list of
    profile ids can be far larger than a workflow input may be)."""

    __tablename__ = "run_member"
    # a segment's run condition asks, profile by profile, which runs each was in
    __table_args__ = (Index("ix_run_member_profile", "profile_id"),)

    run_id: str = Field(
        sa_column=Column(
            String(200), ForeignKey("journey_run.id", ondelete="CASCADE"), primary_key=True
        )
    )
    profile_id: str = Field(sa_column=Column(String(128), primary_key=True))
