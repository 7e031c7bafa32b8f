"""Custom events in the store: idempotent on the event id, forwarded afterwards."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import insert_for
from tidings.store.models import CustomEvent


@dataclass(frozen=True)
class EventReport:
    event_id: str
    profile_id: str
    name: str
    properties: dict[str, Any]
    occurred_at: datetime


async def store_event(
    session: AsyncSession, report: EventReport, now: datetime
) -> tuple[CustomEvent, bool]:
    """Store the event (or find the one stored under its id); return it and whether this
    call stored it."""
    values: dict[str, Any] = {
        "event_id": report.event_id,
        "profile_id": report.profile_id,
        "name": report.name,
        "properties": report.properties,
        "occurred_at": report.occurred_at,
        "received_at": now,
        "forward_attempts": 0,
    }
    result = await session.exec(
        insert_for(session, CustomEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(col(CustomEvent.id))
    )
    # RETURNING, not rowcount: psycopg reports -1 rows for INSERT ... ON CONFLICT DO NOTHING
    inserted = result.first()
    if inserted is not None:
        return CustomEvent(id=inserted[0], **values), True
    row = (
        await session.exec(select(CustomEvent).where(col(CustomEvent.event_id) == report.event_id))
    ).one()
    return row, False


async def mark_forwarded(session: AsyncSession, event_id: str, now: datetime) -> None:
    await session.exec(
        update(CustomEvent)
        .where(col(CustomEvent.event_id) == event_id)
        .values(
            forwarded_at=now,
            forward_attempts=col(CustomEvent.forward_attempts) + 1,
            last_error=None,
        )
    )


async def mark_failed(session: AsyncSession, event_id: str, error: str) -> None:
    await session.exec(
        update(CustomEvent)
        .where(col(CustomEvent.event_id) == event_id)
        .values(forward_attempts=col(CustomEvent.forward_attempts) + 1, last_error=error[:2000])
    )


async def unforwarded(
    session: AsyncSession, *, older_than: datetime, limit: int = 100
) -> list[CustomEvent]:
    """Events still waiting to be forwarded, oldest first (those just received are being
    forwarded by the request that stored them)."""
    result = await session.exec(
        select(CustomEvent)
        .where(col(CustomEvent.forwarded_at).is_(None))
        .where(col(CustomEvent.received_at) < older_than)
        .order_by(col(CustomEvent.id))
        .limit(limit)
    )
    return list(result.all())


SWEEP_GRACE = timedelta(seconds=5)
