"""A schedule's firing stored as a journey run, as a designer's start stores one: the
journey read (its latest version unless the schedule names one), the audience resolved
now, the run and its members written; the firing workflow then starts the run workflow."""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.contracts import RecordScheduledRun, ScheduledRunRecord
from activities.declarations import RECORD_SCHEDULED_RUN, SchedulesActivity
from tidings.runs.errors import StartError
from tidings.runs.start import AudienceChoice, load_stored, record_run, recorded_run
from tidings.store.db import Database
from tidings.store.models import JourneyRun, JourneySchedule
from tidings.store.types import utcnow
from tidings.temporal.search import registered


class ScheduleActivities(SchedulesActivity):
    def __init__(self, db: Database, client: Client) -> None:
        self._db = db
        self._client = client

    @activity.defn(name=RECORD_SCHEDULED_RUN)
    async def record_run(self, request: RecordScheduledRun) -> ScheduledRunRecord:
        async with self._db.read() as session:
            stored = await session.get(JourneyRun, request.run_id)
        try:
            if stored is not None:
                # a retry after the run was stored: the same run, not a second one
                recorded = recorded_run(stored)
            else:
                journey = await load_stored(self._db, request.journey_id, request.version)
                audience = request.audience
                choice = AudienceChoice(
                    audience.profile_ids,
                    audience.emails,
                    audience.where,
                    audience.app,
                    audience.segment,
                )
                recorded = await record_run(
                    self._db,
                    journey,
                    request.run_id,
                    audience=choice,
                    schedule_id=request.schedule_id,
                )
        except StartError as error:
            await self._note(request.schedule_id, None, str(error))
            # the firing starts nothing; the next one tries again
            raise ApplicationError(str(error), type="CannotStart", non_retryable=True) from None
        await self._note(request.schedule_id, recorded.run_id, None)
        return ScheduledRunRecord(
            run_id=recorded.run_id,
            journey=recorded.journey,
            version=recorded.version,
            audience=recorded.audience,
            search_attributes=await registered(self._client),
        )

    async def _note(self, schedule_id: str, run_id: str | None, error: str | None) -> None:
        """The schedule's latest firing, for its list (a deleted schedule has no row)."""
        async with self._db.write() as session:
            row = await session.get(JourneySchedule, schedule_id)
            if row is None:
                return
            row.last_fired_at = utcnow()
            row.last_error = error
            if run_id is not None:
                row.last_run_id = run_id
            session.add(row)
