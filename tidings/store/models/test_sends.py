"""Test sends: one push node's content, rendered for one profile, sent to chosen devices
outside any run. Kept apart from the send ledger, so run reports, funnels, frequency caps
and metrics of pushes never count them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, json_column_type, utcnow


class TestSendStatus(StrEnum):
    __test__ = False  # not a pytest class

    PENDING = "pending"  # recorded; the worker has not finished sending it
    DONE = "done"  # every device has its outcome
    FAILED = "failed"  # the send could not run (its devices say why)


class TestSend(SQLModel, table=True):
    __test__ = False  # not a pytest class
    __tablename__ = "test_send"
    __table_args__ = (Index("ix_test_send_journey_time", "journey_id", "created_at"),)

    # ``ts-<hex>``: also the workflow id's tail, unique across stores sharing one Temporal
    id: str = Field(sa_column=Column(String(40), primary_key=True))
    # who asked: ``api`` (the admin key), ``console``, ``cli``
    requested_by: str = Field(sa_column=Column(String(64), nullable=False))
    journey_id: str = Field(sa_column=Column(String(64), nullable=False))
    journey_version: int = Field(sa_column=Column(Integer, nullable=False))
    node_id: str = Field(sa_column=Column(String(64), nullable=False))
    app_id: str = Field(sa_column=Column(String(64), nullable=False))
    profile_id: str = Field(sa_column=Column(String(128), nullable=False))
    # the push as rendered for the profile (tidings.push.PushMessage's fields): what is sent
    message: dict[str, Any] = Field(sa_column=Column(json_column_type(), nullable=False))
    # one entry per device: device_id, provider, token (masked), tracking_id, status
    # (pending, sent, failed, token_gone, token_suspect, not_sent), reason, message_id
    devices: list[dict[str, Any]] = Field(sa_column=Column(json_column_type(), nullable=False))
    status: TestSendStatus = Field(
        default=TestSendStatus.PENDING, sa_column=Column(String(16), nullable=False)
    )
    # why the send as a whole could not run (Temporal refused it, the worker gave up)
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    completed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
