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
    # sent, and the provider's answer was lost (a reset, a timeout): it may have been
    # delivered. Retried with the same apns-id and collapse id while the row is open; a row
    # closed so (its retry horizon passed) stays ``unknown``.
    UNKNOWN = "unknown"
    DELIVERED = "delivered"  # the provider accepted the push
    TOKEN_GONE = "token_gone"  # the provider said the token no longer exists
    TOKEN_SUSPECT = "token_suspect"  # the token was quarantined
    CONFIG_FAULT = "config_fault"  # credentials/topic/payload rejected; never retried
    FAILED = "failed"  # retries exhausted
    EXPIRED = "expired"  # its TTL passed before it could be sent
    NOT_SENT = "not_sent"  # held back by a rule (frequency cap, stopped app, template error)


class SendCause(StrEnum):
    """Why a row did not end ``delivered``, where the status alone does not say: typed, so
    reports and summaries never parse reasons back."""

    APP_STOPPED = "app_stopped"  # the app's sends to this provider are stopped
    PUSH_REFUSED = "push_refused"  # the provider refused this push itself (payload, headers)
    WITH_REFUSED_PUSH = "with_refused_push"  # not sent: the same push was refused
    NO_CREDENTIALS = "no_credentials"  # the app has no credentials for the provider
    NO_DEVICE = "no_device"  # the profile has no valid device (or no longer exists)
    TEMPLATE = "template"  # the push cannot be rendered, or is too large
    FREQUENCY_CAP = "frequency_cap"
    EXPIRED = "expired"  # its TTL ran out before it could be sent
    RATE_TURN = "rate_turn"  # its turn under the app's send rate came after its expiry
    RETRY_HORIZON = "retry_horizon"  # transient failures outlasted the node's retry horizon
    UNTARGETED = "untargeted"  # its device was invalidated or moved between attempts


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
    # requests made for this row, and how many of them got no answer (sent, answer lost): a
    # delivered row with unknown outcomes may have reached the device more than once (the
    # collapse id and notification tag keep the device showing one)
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, default=0))
    unknown_outcomes: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, default=0, server_default="0")
    )
    cause: SendCause | None = Field(default=None, sa_column=Column(String(24)))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    # set when the row is closed: no attempt sends it again (``pending`` and ``unknown`` rows
    # without it are still open)
    completed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
