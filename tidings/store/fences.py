"""The send fence of a delivery batch (tidings.store.models.send_fences): taken by each
attempt as it starts, checked at every group commit, released when the batch is done."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import insert_for
from tidings.store.models import SendFence


@dataclass(frozen=True, slots=True)
class AttemptFence:
    """One attempt of one batch."""

    workflow_run_id: str
    activity_id: str
    attempt: int


async def take_fence(session: AsyncSession, fence: AttemptFence, now: datetime) -> bool:
    """Record the attempt as the batch's newest unless a later one already started; True
    when this attempt may send."""
    insert = insert_for(session, SendFence).values(
        workflow_run_id=fence.workflow_run_id,
        activity_id=fence.activity_id,
        attempt=fence.attempt,
        updated_at=now,
    )
    newer = insert.excluded.attempt > SendFence.__table__.c.attempt  # type: ignore[attr-defined]
    await session.exec(
        insert.on_conflict_do_update(
            index_elements=["workflow_run_id", "activity_id"],
            set_={"attempt": insert.excluded.attempt, "updated_at": now},
            where=newer,
        )
    )
    return await holds_fence(session, fence)


async def holds_fence(session: AsyncSession, fence: AttemptFence) -> bool:
    """Whether the attempt is still the batch's newest (a released fence: the batch was
    finished by another attempt, so this one holds nothing either)."""
    found = await session.exec(
        select(col(SendFence.attempt)).where(
            col(SendFence.workflow_run_id) == fence.workflow_run_id,
            col(SendFence.activity_id) == fence.activity_id,
        )
    )
    newest = found.first()
    return newest == fence.attempt


async def release_fence(session: AsyncSession, fence: AttemptFence) -> None:
    await session.exec(
        delete(SendFence).where(
            col(SendFence.workflow_run_id) == fence.workflow_run_id,
            col(SendFence.activity_id) == fence.activity_id,
            col(SendFence.attempt) == fence.attempt,
        )
    )
