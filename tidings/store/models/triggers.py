"""Triggered journeys: which custom event starts which journey run, and who entered it.

A triggered journey is *activated* as a journey run (its definition snapshot); each event
naming a profile then starts a cohort of one for that profile, with a workflow id derived from
journey and profile so a profile never runs the same journey twice at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, utcnow


class JourneyTrigger(SQLModel, table=True):
    """One activation of a triggered journey. Activating a journey again (a newer version)
    deactivates the older activation: running entries finish on their own snapshot."""

    __tablename__ = "journey_trigger"
    __table_args__ = (Index("ix_journey_trigger_event", "event_name", "active"),)

    run_id: str = Field(
        sa_column=Column(
            String(200), ForeignKey("journey_run.id", ondelete="CASCADE"), primary_key=True
        )
    )
    journey_id: str = Field(sa_column=Column(String(64), nullable=False))
    event_name: str = Field(sa_column=Column(String(128), nullable=False))
    active: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, default=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    deactivated_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class JourneyEntry(SQLModel, table=True):
    """A profile's entries into a triggered journey: what the re-entry policy reads."""

    __tablename__ = "journey_entry"
    __table_args__ = (Index("ix_journey_entry_profile", "profile_id"),)

    journey_id: str = Field(sa_column=Column(String(64), primary_key=True))
    profile_id: str = Field(sa_column=Column(String(128), primary_key=True))
    # the activation (journey run) of the latest entry, and its cohort workflow
    run_id: str = Field(sa_column=Column(String(200), nullable=False))
    workflow_id: str = Field(sa_column=Column(String(255), nullable=False))
    entries: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    first_entered_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_entered_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
