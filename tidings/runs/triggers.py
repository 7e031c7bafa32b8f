"""Triggered journeys: enable one (its event starts it per profile), disable it (no new
entries; entries in flight finish on their snapshot, as when a newer version supersedes it),
and inspect them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import col, select

from tidings.runs.errors import StartError
from tidings.runs.start import activate_trigger, load_stored
from tidings.runs.view import funnel_summary
from tidings.store.db import Database
from tidings.store.journeys import finish_run
from tidings.store.models import JourneyEntry, JourneyRun, JourneyTrigger, RunStatus
from tidings.store.reports import run_funnel
from tidings.store.triggers import deactivate
from tidings.store.types import utcnow


class TriggerState(BaseModel):
    """A triggered journey's latest activation."""

    journey_id: str
    event: str
    enabled: bool
    run_id: str  # the activation: its report counts every entry's pushes
    journey_version: int | None
    enabled_at: datetime
    disabled_at: datetime | None
    # profiles that entered through this activation, and entries in all
    profiles_entered: int
    entries: int
    # activations before this one, newest first
    earlier_runs: list[str]


class TriggerNotFound(LookupError):
    pass


async def list_triggers(db: Database) -> list[TriggerState]:
    """Every journey ever enabled on its event, by journey id."""
    async with db.read() as session:
        journeys = (
            await session.exec(
                select(col(JourneyTrigger.journey_id))
                .distinct()
                .order_by(col(JourneyTrigger.journey_id))
            )
        ).all()
    return [await trigger_state(db, journey_id) for journey_id in journeys]


async def trigger_state(db: Database, journey_id: str) -> TriggerState:
    async with db.read() as session:
        activations = (
            await session.exec(
                select(JourneyTrigger, JourneyRun)
                .join(JourneyRun, col(JourneyRun.id) == col(JourneyTrigger.run_id))
                .where(col(JourneyTrigger.journey_id) == journey_id)
                .order_by(col(JourneyTrigger.created_at).desc(), col(JourneyTrigger.run_id).desc())
            )
        ).all()
        if not activations:
            raise TriggerNotFound(f"journey {journey_id!r} has never been enabled on its event")
        latest, run = activations[0]
        profiles, entries = (
            await session.exec(
                select(func.count(), func.coalesce(func.sum(col(JourneyEntry.entries)), 0)).where(
                    col(JourneyEntry.run_id) == latest.run_id
                )
            )
        ).one()
    return TriggerState(
        journey_id=journey_id,
        event=latest.event_name,
        enabled=latest.active,
        run_id=latest.run_id,
        journey_version=run.journey_version,
        enabled_at=latest.created_at,
        disabled_at=latest.deactivated_at,
        profiles_entered=int(profiles),
        entries=int(entries),
        earlier_runs=[trigger.run_id for trigger, _ in activations[1:]],
    )


async def enable_trigger(db: Database, journey_id: str, version: int | None = None) -> TriggerState:
    """Activate a stored triggered journey (its latest version unless one is named); an
    earlier activation stops taking entries."""
    journey = await load_stored(db, journey_id, version)
    await activate_trigger(db, journey)
    return await trigger_state(db, journey_id)


async def disable_trigger(db: Database, journey_id: str) -> TriggerState:
    """Stop taking entries. The activation's run is finished with its counts; entries in
    flight finish on their own (cancel the run to stop them too)."""
    state = await trigger_state(db, journey_id)
    if not state.enabled:
        raise StartError(f"journey {journey_id!r} is not enabled")
    async with db.write() as session:
        await deactivate(session, state.run_id, utcnow())
        run = await session.get(JourneyRun, state.run_id)
        if run is not None and run.status == RunStatus.RUNNING:
            funnel = await run_funnel(session, state.run_id)
            await finish_run(
                session, state.run_id, RunStatus.COMPLETED.value, funnel_summary(funnel)
            )
    return await trigger_state(db, journey_id)
