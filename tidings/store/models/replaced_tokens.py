"""Tokens a device had before a refresh: a push sent to the old token is still its push."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, id_column_type


class ReplacedToken(SQLModel, table=True):
    """One token a device gave up when its app refreshed it, kept as a SHA-256 digest (the
    token itself is needed for nothing but recognising it). Removed with the device."""

    __tablename__ = "replaced_token"
    __table_args__ = (Index("ix_replaced_token_device", "device_id", "token_digest"),)

    id: int | None = Field(
        default=None, sa_column=Column(id_column_type(), primary_key=True, autoincrement=True)
    )
    device_id: int = Field(
        sa_column=Column(
            id_column_type(), ForeignKey("device.id", ondelete="CASCADE"), nullable=False
        )
    )
    token_digest: str = Field(sa_column=Column(String(64), nullable=False))
    replaced_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
