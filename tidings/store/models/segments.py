"""Saved segments: a named audience filter (tidings.journeys.segments) kept as written."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, String, Text
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, json_column_type, utcnow


class Segment(SQLModel, table=True):
    __tablename__ = "segment"

    # unique, and what journeys, runs and the API name it by
    name: str = Field(sa_column=Column(String(64), primary_key=True))
    description: str | None = Field(default=None, sa_column=Column(Text))
    definition: dict[str, Any] = Field(sa_column=Column(json_column_type(), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
