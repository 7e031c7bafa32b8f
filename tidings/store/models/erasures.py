"""The anonymous trace an erased profile leaves: when, and how much was removed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Integer
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, id_column_type, utcnow


class Erasure(SQLModel, table=True):
    """One erased profile, by counts only: nothing here names or points to the person."""

    __tablename__ = "erasure"

    id: int | None = Field(
        default=None, sa_column=Column(id_column_type(), primary_key=True, autoincrement=True)
    )
    erased_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    devices: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    mappings: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    deliveries: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    interactions: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    # rows of other tables (run memberships, journey events, ...) given the opaque id
    other_records: int = Field(default=0, sa_column=Column(Integer, nullable=False))
