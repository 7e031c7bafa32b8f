"""Which attempt of a delivery batch may still send: Temporal may start a new attempt while
an older one still runs (its worker cut off from Temporal, its heartbeats failing), and two
attempts sending the same open rows would duplicate every push between them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Integer, String
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime


class SendFence(SQLModel, table=True):
    """One row per delivery batch being sent: the execution that may send it, kept fresh
    while it runs. Another execution waits until the row is removed (the holder ended) or
    has gone stale (the holder died), then takes it; a holder that lost it sees so at its
    next group commit and stops sending."""

    __tablename__ = "send_fence"

    # the workflow run and the activity within it: unique to one batch (activity ids start
    # again after continue-as-new, run ids do not)
    workflow_run_id: str = Field(sa_column=Column(String(64), primary_key=True))
    activity_id: str = Field(sa_column=Column(String(64), primary_key=True))
    attempt: int = Field(sa_column=Column(Integer, nullable=False))
    # the holding execution's own token (None: a row written before executions had one)
    holder: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
