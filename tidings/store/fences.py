"""The send fence of a delivery batch (tidings.store.models.send_fences): one execution of the
batch at a time may send it.

An execution takes the fence as it starts and keeps it fresh while it runs; another one (a
newer attempt Temporal started because heartbeats stopped reaching it, or the same attempt
run again after its workflow task was lost) waits while the holder is alive, and takes the
fence over only once it is released or has gone stale (its holder died). The holder checks
it at every group commit and stops sending if it ever lost it. Every execution releases the
fence however it ends, so the next one never waits on a holder that is gone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import insert_for
from tidings.store.models import SendFence

# A holder refreshes its fence far more often than this; one not refreshed for this long is
# taken for dead (its worker killed, or starved of CPU for as long as Temporal's heartbeat
# timeout) and the fence goes to the next execution.
FENCE_LEASE = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class AttemptFence:
    """One execution of one batch: its attempt number, and a token of its own (two
    executions may carry the same attempt number)."""

    workflow_run_id: str
    activity_id: str
    attempt: int
    holder: str = field(default_factory=lambda: uuid.uuid4().hex)


async def take_fence(session: AsyncSession, fence: AttemptFence, now: datetime) -> bool:
    """Take the batch's fence unless another execution holds it and is alive; True when
    this execution now holds it (and may send)."""
    insert = insert_for(session, SendFence).values(
        workflow_run_id=fence.workflow_run_id,
        activity_id=fence.activity_id,
        attempt=fence.attempt,
        holder=fence.holder,
        updated_at=now,
    )
    table = SendFence.__table__.c  # type: ignore[attr-defined]
    free = or_(
        table.holder == insert.excluded.holder,
        table.holder.is_(None),
        table.updated_at < now - FENCE_LEASE,
    )
    await session.exec(
        insert.on_conflict_do_update(
            index_elements=["workflow_run_id", "activity_id"],
            set_={
                "attempt": insert.excluded.attempt,
                "holder": insert.excluded.holder,
                "updated_at": now,
            },
            where=free,
        )
    )
    return await holds_fence(session, fence)


async def holds_fence(session: AsyncSession, fence: AttemptFence) -> bool:
    """Whether this execution still holds the fence (a released fence: the batch was
    finished by another execution, so this one holds nothing either)."""
    found = await session.exec(
        select(col(SendFence.holder)).where(
            col(SendFence.workflow_run_id) == fence.workflow_run_id,
            col(SendFence.activity_id) == fence.activity_id,
        )
    )
    return found.first() == fence.holder


async def refresh_fence(session: AsyncSession, fence: AttemptFence, now: datetime) -> bool:
    """Keep the fence fresh, if this execution still holds it; whether it does."""
    refreshed = await session.exec(
        update(SendFence)
        .where(
            col(SendFence.workflow_run_id) == fence.workflow_run_id,
            col(SendFence.activity_id) == fence.activity_id,
            col(SendFence.holder) == fence.holder,
        )
        .values(updated_at=now)
    )
    return bool(refreshed.rowcount)


async def release_fence(session: AsyncSession, fence: AttemptFence) -> None:
    """Give the fence up, if this execution still holds it."""
    await session.exec(
        delete(SendFence).where(
            col(SendFence.workflow_run_id) == fence.workflow_run_id,
            col(SendFence.activity_id) == fence.activity_id,
            col(SendFence.holder) == fence.holder,
        )
    )
