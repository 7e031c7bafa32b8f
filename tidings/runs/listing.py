"""Runs as lists show them, filtered by journey and status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import col, select

from tidings.store.db import Database
from tidings.store.models import JourneyRun, RunStatus


class RunSummary(BaseModel):
    id: str
    journey_id: str
    journey_version: int | None
    # "audience" (started for an audience) or "trigger" (started per profile by an event)
    kind: str
    # the audience: "app" or "members", the app, the filters; or the trigger's event
    entry: dict[str, Any]
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    error: str | None


def run_summary(run: JourneyRun) -> RunSummary:
    entry = dict(run.entry or {})
    return RunSummary(
        id=run.id,
        journey_id=run.journey_id,
        journey_version=run.journey_version,
        kind="trigger" if "trigger" in entry else "audience",
        entry=entry,
        status=RunStatus(run.status),
        started_at=run.started_at,
        finished_at=run.finished_at,
        error=run.error,
    )


async def list_runs(
    db: Database,
    *,
    journey_id: str | None = None,
    status: RunStatus | None = None,
    before: str | None = None,
    limit: int = 50,
) -> list[RunSummary]:
    """In descending order of id (``run-<journey>-<start time>-<random>``: one journey's runs
    come newest first), the list's unique key; ``before`` is the last id of the previous
    page."""
    statement = select(JourneyRun)
    if journey_id is not None:
        statement = statement.where(col(JourneyRun.journey_id) == journey_id)
    if status is not None:
        statement = statement.where(col(JourneyRun.status) == status.value)
    if before is not None:
        statement = statement.where(col(JourneyRun.id) < before)
    statement = statement.order_by(col(JourneyRun.id).desc()).limit(limit)
    async with db.read() as session:
        runs = (await session.exec(statement)).all()
    return [run_summary(run) for run in runs]


async def get_run(db: Database, run_id: str) -> RunSummary | None:
    async with db.read() as session:
        run = await session.get(JourneyRun, run_id)
    return run_summary(run) if run is not None else None
