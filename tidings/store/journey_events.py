"""Journey events in the store: written in batches by the cohorts, read by reports and by
the routing of custom events to running journeys."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities.contracts import JourneyEventRecord
from tidings.store.dialect import insert_for
from tidings.store.models import JourneyEvent, JourneyRun, RunStatus

BATCH = 2000


async def write_journey_events(
    session: AsyncSession,
    *,
    run_id: str,
    journey_id: str,
    workflow_id: str,
    occurred_at: datetime,
    events: Sequence[JourneyEventRecord],
) -> None:
    """Insert the events; one written before (a retried activity) is left as it is."""
    rows = [
        {
            "event_key": f"{workflow_id}:{event.key}",
            "run_id": run_id,
            "journey_id": journey_id,
            "workflow_id": workflow_id,
            "profile_id": event.profile_id,
            "node_id": event.node_id,
            "kind": event.kind,
            "until": event.until,
            "detail": event.detail,
            "occurred_at": occurred_at,
        }
        for event in events
    ]
    statement = insert_for(session, JourneyEvent).on_conflict_do_nothing(
        index_elements=["event_key"]
    )
    for start in range(0, len(rows), BATCH):
        await session.exec(statement, params=rows[start : start + BATCH])


async def running_entries(
    session: AsyncSession, profile_ids: Collection[str]
) -> dict[str, list[tuple[str, JourneyRun]]]:
    """Per profile, (cohort workflow id, run) of every running audience run it entered whose
    journey listens for custom events: one query for all of them."""
    found: dict[str, list[tuple[str, JourneyRun]]] = {p: [] for p in profile_ids}
    result = await session.exec(
        select(col(JourneyEvent.profile_id), col(JourneyEvent.workflow_id), JourneyRun)
        .join(JourneyRun, col(JourneyRun.id) == col(JourneyEvent.run_id))
        .where(col(JourneyEvent.profile_id).in_(list(profile_ids)))
        .where(col(JourneyEvent.kind) == "entered")
        .where(col(JourneyRun.status) == RunStatus.RUNNING.value)
    )
    for profile_id, workflow_id, run in result.all():
        found[profile_id].append((workflow_id, run))
    return found
