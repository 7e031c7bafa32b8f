"""Run records: what the store keeps about a journey run once it ends."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col
from temporalio import activity

from activities.contracts import FINISH_RUN, FinishRun
from tidings.store.db import Database
from tidings.store.models import JourneyRun
from tidings.store.types import utcnow


class RecordActivities:
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name=FINISH_RUN)
    async def finish_run(self, request: FinishRun) -> None:
        async with self._db.write() as session:
            await session.exec(
                update(JourneyRun)
                .where(col(JourneyRun.id) == request.run_id)
                .values(
                    status=request.status,
                    summary=request.summary,
                    error=request.error,
                    finished_at=utcnow(),
                )
            )
