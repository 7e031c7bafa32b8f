"""Profiles (the people journeys address) and the app-user-id to profile mapping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, json_column_type, utcnow


class Profile(SQLModel, table=True):
    __tablename__ = "profile"

    id: str = Field(sa_column=Column(String(128), primary_key=True))
    email: str | None = Field(default=None, sa_column=Column(String(320), unique=True))
    phone: str | None = Field(default=None, sa_column=Column(String(32), unique=True))
    timezone: str | None = Field(default=None, sa_column=Column(String(64)))
    locale: str | None = Field(default=None, sa_column=Column(String(35)))
    attributes: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(json_column_type(), nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )


class AppUserMapping(SQLModel, table=True):
    """An app's own user id mapped to a profile (Customer Insights' "user mapping")."""

    __tablename__ = "app_user_mapping"
    __table_args__ = (Index("ix_app_user_mapping_profile", "profile_id"),)

    app_id: str = Field(
        sa_column=Column(String(64), ForeignKey("app.id", ondelete="CASCADE"), primary_key=True)
    )
    app_user_id: str = Field(sa_column=Column(String(256), primary_key=True))
    profile_id: str = Field(
        sa_column=Column(String(128), ForeignKey("profile.id", ondelete="CASCADE"), nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
