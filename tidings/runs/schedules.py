"""Journeys started on a schedule, through Temporal Schedules: create, list (with the next
firing times), pause, resume, fire now, delete. Shared by the API, the CLI and the console.

Each firing starts the ``ScheduledRun`` workflow (workflows/scheduled.py), which stores the
firing's run with its audience resolved then and starts the run workflow under the run's id.

Catch-up: a firing Temporal misses (the server was down at its time) is still taken if
Temporal is back within ``CATCHUP_WINDOW`` of it, once; older misses are dropped and the
schedule goes on at its next time. Workers being down misses nothing: the firing waits on the
task queue. Overlap: a firing due while the previous firing's workflow is still storing its
run is skipped (runs themselves may overlap: a daily journey with a two-day wait has two
running at once, as two designer starts would).
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from pydantic import BaseModel
from sqlmodel import col, select
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import ScheduledAudience
from tidings.journeys.predicates import AttributePredicate
from tidings.journeys.validation import JourneyInvalid, parse_definition
from tidings.runs.options import engine_options
from tidings.runs.schedule_spec import Cadence, Kind, ScheduleInvalid, check_cadence
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.journeys import stored_definition
from tidings.store.models import App, JourneySchedule, Segment
from tidings.store.types import utcnow
from workflows.contracts import ScheduledRunInput
from workflows.scheduled import ScheduledRunWorkflow

CATCHUP_WINDOW = timedelta(minutes=10)
# next firing times a list shows per schedule
NEXT_TIMES = 3


class ScheduleNotFound(LookupError):
    pass


class ScheduleExists(ValueError):
    pass


@dataclass(frozen=True)
class ScheduleRequest:
    journey_id: str
    cadence: Cadence
    version: int | None = None
    audience: ScheduledAudience = field(default_factory=ScheduledAudience)
    schedule_id: str | None = None


class ScheduleView(BaseModel):
    """A schedule as the store keeps it and Temporal runs it. ``paused`` and ``next_times``
    come from Temporal (``missing``: Temporal has no such schedule any more)."""

    id: str
    journey_id: str
    version: int | None
    kind: str
    at: str | None
    weekday: str | None
    every: str | None
    time_zone: str
    when: str
    audience: dict[str, Any]
    created_at: datetime
    paused: bool = False
    note: str | None = None
    next_times: list[datetime] = []
    firings: int = 0
    missing: bool = False
    last_fired_at: datetime | None = None
    last_run_id: str | None = None
    last_error: str | None = None


def new_schedule_id(journey_id: str) -> str:
    return f"sched-{journey_id}-{secrets.token_hex(3)}"


async def create_schedule(
    client: Client, db: Database, settings: Settings, request: ScheduleRequest
) -> ScheduleView:
    """Check the request field by field (ScheduleInvalid), store it and create its Temporal
    Schedule."""
    checked = check_cadence(request.cadence, utcnow())
    await _check_journey(db, request)
    schedule_id = request.schedule_id or new_schedule_id(request.journey_id)
    audience = request.audience
    cadence = request.cadence
    row = JourneySchedule(
        id=schedule_id,
        journey_id=request.journey_id,
        version=request.version,
        kind=cadence.kind,
        at=cadence.at,
        weekday=cadence.weekday.lower() if cadence.weekday else None,
        every=cadence.every,
        time_zone=cadence.time_zone,
        audience=_audience_json(audience),
    )
    async with db.read() as session:
        if await session.get(JourneySchedule, schedule_id) is not None:
            raise ScheduleExists(f"a schedule {schedule_id!r} exists")
    firing = ScheduledRunInput(
        schedule_id=schedule_id,
        journey_id=request.journey_id,
        version=request.version,
        audience=audience,
        options=engine_options(settings),
    )
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            ScheduledRunWorkflow.run,
            firing,
            # Temporal appends each firing's time to this id
            id=f"{schedule_id}-firing",
            task_queue=settings.task_queue,
            static_summary=f"journey {request.journey_id} on schedule {schedule_id}",
        ),
        spec=checked.spec,
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=CATCHUP_WINDOW,
            pause_on_failure=False,
        ),
        state=ScheduleState(
            note=f"journey {request.journey_id}: {cadence.describe()}",
            limited_actions=checked.once,
            remaining_actions=1 if checked.once else 0,
        ),
    )
    try:
        await client.create_schedule(schedule_id, schedule, memo={"journey": request.journey_id})
    except ScheduleAlreadyRunningError:
        raise ScheduleExists(f"Temporal already has a schedule {schedule_id!r}") from None
    try:
        async with db.write() as session:
            session.add(row)
    except BaseException:
        # a schedule the store does not know would fire unseen
        await client.get_schedule_handle(schedule_id).delete()
        raise
    return await get_schedule(client, db, schedule_id)


async def _check_journey(db: Database, request: ScheduleRequest) -> None:
    async with db.read() as session:
        found = await stored_definition(session, request.journey_id, request.version)
        if found is None:
            if request.version is not None and await stored_definition(session, request.journey_id):
                raise ScheduleInvalid(
                    "version", f"journey {request.journey_id!r} has no version {request.version}"
                )
            raise ScheduleInvalid(
                "journey_id", f"no journey {request.journey_id!r} in the store: save it first"
            )
        try:
            journey = parse_definition(found[0])
        except JourneyInvalid as error:
            raise ScheduleInvalid("journey_id", f"the stored journey is invalid: {error}") from None
        if journey.trigger is not None:
            raise ScheduleInvalid(
                "journey_id",
                f"journey {journey.id!r} starts on the event {journey.trigger.event!r}, not on "
                "a schedule",
            )
        app = request.audience.app
        if app is not None and await session.get(App, app) is None:
            raise ScheduleInvalid("audience.app", f"no app {app!r}")
        segment = request.audience.segment
        if segment is not None:
            audience = request.audience
            if audience.app or audience.where or audience.profile_ids or audience.emails:
                raise ScheduleInvalid(
                    "audience.segment", "a segment audience takes no app, filters or profiles"
                )
            if await session.get(Segment, segment) is None:
                raise ScheduleInvalid("audience.segment", f"no segment {segment!r}")


def _audience_json(audience: ScheduledAudience) -> dict[str, Any]:
    return {
        "app": audience.app,
        "where": [p.model_dump(mode="json") for p in audience.where],
        "profile_ids": list(audience.profile_ids),
        "emails": list(audience.emails),
    } | ({"segment": audience.segment} if audience.segment is not None else {})


def audience_of(row: JourneySchedule) -> ScheduledAudience:
    data = row.audience or {}
    return ScheduledAudience(
        app=data.get("app"),
        where=[AttributePredicate.model_validate(p) for p in data.get("where", [])],
        profile_ids=list(data.get("profile_ids", [])),
        emails=list(data.get("emails", [])),
        segment=data.get("segment"),
    )


async def list_schedules(
    client: Client,
    db: Database,
    *,
    journey_id: str | None = None,
    after: str | None = None,
    limit: int | None = None,
) -> list[ScheduleView]:
    """Every schedule (one journey's), by id (those after ``after``, at most ``limit``), with
    Temporal's word on each."""
    statement = select(JourneySchedule).order_by(col(JourneySchedule.id))
    if journey_id is not None:
        statement = statement.where(col(JourneySchedule.journey_id) == journey_id)
    if after is not None:
        statement = statement.where(col(JourneySchedule.id) > after)
    if limit is not None:
        statement = statement.limit(limit)
    async with db.read() as session:
        rows = list((await session.exec(statement)).all())
    described = await asyncio.gather(*(_describe(client, row.id) for row in rows))
    return [_view(row, found) for row, found in zip(rows, described, strict=True)]


async def get_schedule(client: Client, db: Database, schedule_id: str) -> ScheduleView:
    row = await _row(db, schedule_id)
    return _view(row, await _describe(client, schedule_id))


async def pause_schedule(
    client: Client, db: Database, schedule_id: str, note: str | None = None
) -> ScheduleView:
    """No firing until resumed (a missed firing is not taken back on resume)."""
    await _row(db, schedule_id)
    await _on_temporal(schedule_id, client.get_schedule_handle(schedule_id).pause(note=note))
    return await get_schedule(client, db, schedule_id)


async def resume_schedule(client: Client, db: Database, schedule_id: str) -> ScheduleView:
    await _row(db, schedule_id)
    await _on_temporal(schedule_id, client.get_schedule_handle(schedule_id).unpause())
    return await get_schedule(client, db, schedule_id)


async def fire_now(client: Client, db: Database, schedule_id: str) -> ScheduleView:
    """Fire once now, besides the cadence (also while paused)."""
    await _row(db, schedule_id)
    await _on_temporal(
        schedule_id,
        client.get_schedule_handle(schedule_id).trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL),
    )
    return await get_schedule(client, db, schedule_id)


async def delete_schedule(client: Client, db: Database, schedule_id: str) -> None:
    """No more firings; runs it started go on (cancel them as runs)."""
    await _row(db, schedule_id)
    try:
        await client.get_schedule_handle(schedule_id).delete()
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
    async with db.write() as session:
        row = await session.get(JourneySchedule, schedule_id)
        if row is not None:
            await session.delete(row)


async def _row(db: Database, schedule_id: str) -> JourneySchedule:
    async with db.read() as session:
        row = await session.get(JourneySchedule, schedule_id)
    if row is None:
        raise ScheduleNotFound(f"no schedule {schedule_id!r}")
    return row


async def _on_temporal(schedule_id: str, call: Any) -> None:
    try:
        await call
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise ScheduleNotFound(
                f"Temporal has no schedule {schedule_id!r} any more: delete it and create it again"
            ) from None
        raise


async def _describe(client: Client, schedule_id: str) -> ScheduleDescription | None:
    try:
        return await client.get_schedule_handle(schedule_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def _view(row: JourneySchedule, found: ScheduleDescription | None) -> ScheduleView:
    cadence = Cadence(
        kind=cast(Kind, row.kind),
        at=row.at,
        weekday=row.weekday,
        every=row.every,
        time_zone=row.time_zone,
    )
    view = ScheduleView(
        id=row.id,
        journey_id=row.journey_id,
        version=row.version,
        kind=row.kind,
        at=row.at,
        weekday=row.weekday,
        every=row.every,
        time_zone=row.time_zone,
        when=cadence.describe(),
        audience=row.audience,
        created_at=row.created_at,
        last_fired_at=row.last_fired_at,
        last_run_id=row.last_run_id,
        last_error=row.last_error,
    )
    if found is None:
        view.missing = True
        return view
    state = found.schedule.state
    view.paused = state.paused
    view.note = state.note or None
    view.next_times = list(found.info.next_action_times[:NEXT_TIMES])
    view.firings = found.info.num_actions
    return view
