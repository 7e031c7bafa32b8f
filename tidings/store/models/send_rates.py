"""Token buckets of the per-app send rate limit, shared by every worker process."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Float, ForeignKey, String
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime


class SendRateBucket(SQLModel, table=True):
    """One row per rate-limited app: the tokens left at ``refilled_at``.

    Workers reserve capacity in chunks with one short write transaction (the row locked on
    PostgreSQL, the database on SQLite), so the limit holds across processes and machines.
    ``tokens`` may go negative: a reservation beyond the bucket is a debt its sender waits off.
    """

    __tablename__ = "send_rate_bucket"

    app_id: str = Field(
        sa_column=Column(String(64), ForeignKey("app.id", ondelete="CASCADE"), primary_key=True)
    )
    tokens: float = Field(sa_column=Column(Float, nullable=False))
    refilled_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
