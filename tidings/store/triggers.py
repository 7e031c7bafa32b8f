"""Triggered journeys in the store: activations, and each profile's entries (what the
re-entry policy reads)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import insert_for
from tidings.store.models import Delivery, JourneyEntry, JourneyRun, JourneyTrigger


async def activate(
    session: AsyncSession, *, run_id: str, journey_id: str, event_name: str, now: datetime
) -> list[str]:
    """Make ``run_id`` the journey's active activation; return the runs it supersedes (their
    entries in flight finish on their own snapshot, new entries use this one)."""
    superseded = list(
        (
            await session.exec(
                select(col(JourneyTrigger.run_id))
                .where(col(JourneyTrigger.journey_id) == journey_id)
                .where(col(JourneyTrigger.active).is_(True))
            )
        ).all()
    )
    if superseded:
        await session.exec(
            update(JourneyTrigger)
            .where(col(JourneyTrigger.run_id).in_(superseded))
            .values(active=False, deactivated_at=now)
        )
    session.add(
        JourneyTrigger(run_id=run_id, journey_id=journey_id, event_name=event_name, created_at=now)
    )
    await session.flush()
    return superseded


async def deactivate(session: AsyncSession, run_id: str, now: datetime) -> None:
    await session.exec(
        update(JourneyTrigger)
        .where(col(JourneyTrigger.run_id) == run_id)
        .where(col(JourneyTrigger.active).is_(True))
        .values(active=False, deactivated_at=now)
    )


async def active_triggers(session: AsyncSession, event_name: str) -> list[JourneyRun]:
    """The activations (runs, with their definition snapshots) this event starts."""
    result = await session.exec(
        select(JourneyRun)
        .join(JourneyTrigger, col(JourneyTrigger.run_id) == col(JourneyRun.id))
        .where(col(JourneyTrigger.event_name) == event_name)
        .where(col(JourneyTrigger.active).is_(True))
        .order_by(col(JourneyRun.id))
    )
    return list(result.all())


async def trigger_of(session: AsyncSession, run_id: str) -> JourneyTrigger | None:
    return await session.get(JourneyTrigger, run_id)


async def entries_of_profiles(
    session: AsyncSession, profile_ids: Collection[str]
) -> dict[str, list[JourneyEntry]]:
    """Each profile's entries into triggered journeys, in one query."""
    found: dict[str, list[JourneyEntry]] = {p: [] for p in profile_ids}
    result = await session.exec(
        select(JourneyEntry).where(col(JourneyEntry.profile_id).in_(list(profile_ids)))
    )
    for entry in result.all():
        found[entry.profile_id].append(entry)
    return found


@dataclass(frozen=True)
class NewEntry:
    """A profile entering a triggered journey (a cohort of one just started)."""

    journey_id: str
    profile_id: str
    run_id: str
    workflow_id: str
    entered_at: datetime


async def record_entry(session: AsyncSession, entry: NewEntry) -> None:
    values = {
        "journey_id": entry.journey_id,
        "profile_id": entry.profile_id,
        "run_id": entry.run_id,
        "workflow_id": entry.workflow_id,
        "entries": 1,
        "first_entered_at": entry.entered_at,
        "last_entered_at": entry.entered_at,
    }
    statement = insert_for(session, JourneyEntry).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["journey_id", "profile_id"],
        set_={
            "run_id": entry.run_id,
            "workflow_id": entry.workflow_id,
            "entries": col(JourneyEntry.entries) + 1,
            "last_entered_at": entry.entered_at,
        },
    )
    await session.exec(statement)


async def entry_workflows(session: AsyncSession, run_id: str) -> list[str]:
    """The cohort workflows of an activation's entries (for a cancel)."""
    result = await session.exec(
        select(col(JourneyEntry.workflow_id)).where(col(JourneyEntry.run_id) == run_id)
    )
    return list(result.all())


async def prior_visits(session: AsyncSession, workflow_id: str) -> dict[str, int]:
    """Per push node, how many sends earlier entries of this workflow id made: a new entry
    numbers its visits on from there, so its ledger rows are its own."""
    result = await session.exec(
        select(col(Delivery.node_id), func.max(col(Delivery.visit)))
        .where(col(Delivery.workflow_id) == workflow_id)
        .group_by(col(Delivery.node_id))
    )
    return {node_id: int(visit) + 1 for node_id, visit in result.all()}
