"""The send ledger: at most one push per (journey workflow, node, visit, device).

A row is written *before* the provider call (status ``pending``) and completed after it. A
retried activity skips completed rows, so Temporal's at-least-once activities never turn into
duplicate pushes; the push carries the row's tracking id as its collapse id, so a duplicate in
the crash window between the provider's answer and the row's completion collapses on the
device.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Index, Integer, String, Text
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, id_column_type, utcnow


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # written, provider not (yet) known to have answered
    DELIVERED = "delivered"  # the provider accepted the push
    TOKEN_GONE = "token_gone"  # the provider said the token no longer exists
    TOKEN_SUSPECT = "token_suspect"  # the token was quarantined
    CONFIG_FAULT = "config_fault"  # credentials/topic/payload rejected; never retried
    FAILED = "failed"  # retries exhausted
    EXPIRED = "expired"  # its TTL passed before it could be sent
    NOT_SENT = "not_sent"  # held back by a rule (frequency cap, stopped app, template error)

    @property
    def is_final(self) -> bool:
        return self is not DeliveryStatus.PENDING


class Delivery(SQLModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_run_node", "run_id", "node_id", "status"),
        Index("ix_delivery_profile_time", "profile_id", "created_at"),
        Index("ix_delivery_workflow", "workflow_id"),
    )

    id: int | None = Field(
        default=None, sa_column=Column(id_column_type(), primary_key=True, autoincrement=True)
    )
    # workflow id : node id : visit : device id (run ids change on continue-as-new; never
    # key on them). Unique, so a second insert for the same send is a no-op.
    send_key: str = Field(sa_column=Column(String(400), nullable=False, unique=True))
    tracking_id: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    run_id: str = Field(sa_column=Column(String(200), nullable=False))
    workflow_id: str = Field(sa_column=Column(String(255), nullable=False))
    journey_id: str = Field(sa_column=Column(String(64), nullable=False))
    node_id: str = Field(sa_column=Column(String(64), nullable=False))
    visit: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    app_id: str = Field(sa_column=Column(String(64), nullable=False))
    profile_id: str = Field(sa_column=Column(String(128), nullable=False))
    device_id: int | None = Field(default=None, sa_column=Column(id_column_type()))
    provider: str | None = Field(default=None, sa_column=Column(String(8)))
    status: DeliveryStatus = Field(
        default=DeliveryStatus.PENDING, sa_column=Column(String(16), nullable=False)
    )
    reason: str | None = Field(default=None, sa_column=Column(Text))
    provider_message_id: str | None = Field(default=None, sa_column=Column(String(200)))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    completed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
