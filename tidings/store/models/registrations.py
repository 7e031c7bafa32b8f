"""Tracked device registrations of the Customer Insights - Journeys compatible surface."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, utcnow


class RegistrationStatus(StrEnum):
    """The values Customer Insights - Journeys reports (its spelling, on purpose)."""

    PENDING = "Pending"
    SUCCESS = "Success"
    FAILED = "Failed"


class RegistrationFailure(StrEnum):
    DUPLICATE_EXISTS = "DuplicateExists"
    DRY_RUN_SENDING_FAILED = "DryRunSendingFailed"
    DEVICE_TOKEN_TOO_LONG = "DeviceTokenTooLong"
    FAILED_TO_STORE_DEVICE = "FailedToStoreDevice"
    API_TOKEN_NOT_VALID = "ApiTokenNotValid"


class RegistrationRequest(SQLModel, table=True):
    """The outcome of one tracked registration (``x-ms-track-registration: true``), for the
    status call. It holds no token and no profile id: only what the status call answers."""

    __tablename__ = "registration_request"
    __table_args__ = (Index("ix_registration_request_app", "app_id", "created_at"),)

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    app_id: str = Field(
        sa_column=Column(String(64), ForeignKey("app.id", ondelete="CASCADE"), nullable=False)
    )
    status: RegistrationStatus = Field(sa_column=Column(String(16), nullable=False))
    failure_reason: RegistrationFailure | None = Field(default=None, sa_column=Column(String(32)))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
