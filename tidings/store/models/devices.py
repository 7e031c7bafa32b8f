"""Devices: one push token of one app, owned by one profile."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, id_column_type, utcnow


class Provider(StrEnum):
    APNS = "apns"
    FCM = "fcm"


class DeviceState(StrEnum):
    VALID = "valid"
    # The provider said the token is gone (APNs 410, FCM UNREGISTERED): never targeted again
    # unless the app registers it anew.
    INVALID = "invalid"
    # The provider doubted the token (BadDeviceToken, SENDER_ID_MISMATCH): not targeted, kept.
    QUARANTINED = "quarantined"


class Device(SQLModel, table=True):
    """A token is unique per app: registering it for another profile moves it there, so one
    device can never receive the same push twice through two profiles."""

    __tablename__ = "device"
    __table_args__ = (
        UniqueConstraint("app_id", "token", name="uq_device_app_token"),
        Index("ix_device_targeting", "app_id", "profile_id", "state"),
        # a segment's device condition asks, profile by profile, whether one matches
        Index("ix_device_profile", "profile_id", "state"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(id_column_type(), primary_key=True, autoincrement=True),
    )
    app_id: str = Field(
        sa_column=Column(String(64), ForeignKey("app.id", ondelete="CASCADE"), nullable=False)
    )
    profile_id: str = Field(
        sa_column=Column(String(128), ForeignKey("profile.id", ondelete="CASCADE"), nullable=False)
    )
    provider: Provider = Field(sa_column=Column(String(8), nullable=False))
    token: str = Field(sa_column=Column(Text, nullable=False))
    # APNs only: which gateway the token belongs to (a sandbox token fails on production).
    environment: str | None = Field(default=None, sa_column=Column(String(16)))
    state: DeviceState = Field(
        default=DeviceState.VALID, sa_column=Column(String(16), nullable=False)
    )
    state_reason: str | None = Field(default=None, sa_column=Column(Text))
    state_changed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    # Last time the app registered or refreshed this token; an APNs 410 only invalidates a
    # token whose last registration is not later than the 410's timestamp.
    registered_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
