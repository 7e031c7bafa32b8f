"""Journey definitions in the store: versioned, and snapshotted into each run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import insert_for
from tidings.store.models import Journey, JourneyRun, JourneyVersion, RunMember
from tidings.store.types import utcnow


async def save_version(session: AsyncSession, definition: dict[str, Any]) -> int:
    """Store the definition as the journey's newest version unless it equals the newest one;
    return that version's number."""
    journey_id = str(definition["id"])
    journey = await session.get(Journey, journey_id)
    now = utcnow()
    if journey is None:
        session.add(Journey(id=journey_id, name=str(definition["name"]), latest_version=1))
        session.add(JourneyVersion(journey_id=journey_id, version=1, definition=definition))
        await session.flush()
        return 1
    latest = await session.get(JourneyVersion, (journey_id, journey.latest_version))
    if latest is not None and latest.definition == definition:
        return journey.latest_version
    journey.latest_version += 1
    journey.name = str(definition["name"])
    journey.updated_at = now
    session.add(
        JourneyVersion(journey_id=journey_id, version=journey.latest_version, definition=definition)
    )
    await session.flush()
    return journey.latest_version


async def create_run(
    session: AsyncSession,
    *,
    run_id: str,
    definition: dict[str, Any],
    version: int | None,
    entry: dict[str, Any],
    members: Sequence[str] = (),
) -> JourneyRun:
    run = JourneyRun(
        id=run_id,
        journey_id=str(definition["id"]),
        journey_version=version,
        definition=definition,
        entry=entry,
    )
    session.add(run)
    await session.flush()
    unique = list(dict.fromkeys(members))
    for start in range(0, len(unique), 5000):
        await session.exec(
            insert_for(session, RunMember)
            .values([{"run_id": run_id, "profile_id": p} for p in unique[start : start + 5000]])
            .on_conflict_do_nothing()
        )
    return run


async def recent_runs(session: AsyncSession, limit: int = 20) -> list[JourneyRun]:
    result = await session.exec(
        select(JourneyRun).order_by(col(JourneyRun.started_at).desc()).limit(limit)
    )
    return list(result.all())
