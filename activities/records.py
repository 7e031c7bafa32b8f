"""Run records: what the store keeps about a journey run, its end and the journey events of
its cohorts (postponed sends, goal exits, entries)."""

from __future__ import annotations

from temporalio import activity

from activities.contracts import FinishRun, RecordJourneyEvents
from activities.declarations import FINISH_RUN, RECORD_JOURNEY_EVENTS, RecordsActivity
from tidings.store.db import Database
from tidings.store.journey_events import write_journey_events
from tidings.store.journeys import finish_run as record_run_end


class RecordActivities(RecordsActivity):
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name=FINISH_RUN)
    async def finish_run(self, request: FinishRun) -> None:
        async with self._db.write() as session:
            await record_run_end(
                session, request.run_id, request.status, request.summary, request.error
            )

    @activity.defn(name=RECORD_JOURNEY_EVENTS)
    async def journey_events(self, request: RecordJourneyEvents) -> None:
        async with self._db.write() as session:
            await write_journey_events(
                session,
                run_id=request.run_id,
                journey_id=request.journey_id,
                workflow_id=request.workflow_id,
                occurred_at=request.occurred_at,
                events=request.events,
            )
