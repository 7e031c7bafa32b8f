"""The per-app send rate limit's token bucket, kept in the store so it holds across every
worker process (see models/send_rates.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import insert_for
from tidings.store.models import SendRateBucket


def burst_of(rate_per_s: float) -> float:
    """The bucket holds one second of sends (at least one message)."""
    return max(1.0, rate_per_s)


async def reserve_sends(
    session: AsyncSession, app_id: str, rate_per_s: float, count: int, now: datetime
) -> float:
    """Take ``count`` messages of the app's capacity; return the seconds to wait before
    sending them (0 when the bucket had them).

    Call it in a write session: the bucket row is locked (PostgreSQL ``FOR UPDATE``; SQLite's
    ``BEGIN IMMEDIATE`` already serialises writers) from the read to the update, so concurrent
    workers never grant the same capacity twice. The bucket refills at ``rate_per_s`` up to
    one second's worth; a reservation beyond what it holds leaves a debt that the next
    reservations wait off too. A clock behind the one that last refilled adds nothing.
    """
    if count <= 0:
        return 0.0
    burst = burst_of(rate_per_s)
    await session.exec(
        insert_for(session, SendRateBucket)
        .values(app_id=app_id, tokens=burst, refilled_at=now)
        .on_conflict_do_nothing(index_elements=["app_id"])
    )
    bucket = (
        await session.exec(
            select(SendRateBucket).where(col(SendRateBucket.app_id) == app_id).with_for_update()
        )
    ).one()
    elapsed = max(0.0, (now - bucket.refilled_at).total_seconds())
    tokens = min(burst, bucket.tokens + elapsed * rate_per_s) - count
    await session.exec(
        update(SendRateBucket)
        .where(col(SendRateBucket.app_id) == app_id)
        .values(tokens=tokens, refilled_at=max(now, bucket.refilled_at))
    )
    return max(0.0, -tokens / rate_per_s)
