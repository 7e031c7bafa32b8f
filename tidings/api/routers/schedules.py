"""Journeys started on a schedule (Temporal Schedules): create one (once at a local time,
every day or week at a local time in an IANA time zone, or every interval), list them with
their next firing times, pause, resume, fire now, delete. Each firing is a run of its own
(under /v1/runs), its audience resolved when it fires."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from activities.contracts import ScheduledAudience
from tidings.api.deps import Admin, State, Temporal
from tidings.api.errors import ERROR_RESPONSES, ApiError, responses
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.journeys.predicates import parse_where
from tidings.runs.schedule_spec import Cadence, Kind, ScheduleInvalid
from tidings.runs.schedules import (
    ScheduleExists,
    ScheduleNotFound,
    ScheduleRequest,
    ScheduleView,
    create_schedule,
    delete_schedule,
    fire_now,
    get_schedule,
    list_schedules,
    pause_schedule,
    resume_schedule,
)

ScheduleId = Annotated[
    str,
    Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$", description="its id"),
]
JourneyIdText = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Listed = Annotated[str, Field(min_length=1, max_length=320)]

router = APIRouter(
    prefix="/v1/schedules",
    tags=["schedules"],
    dependencies=[Admin],
    responses=ERROR_RESPONSES,
)


class ScheduleAudienceBody(BaseModel):
    """Whom each firing is for, resolved when it fires. Nothing given: the journey file's own
    `audience`, or else every profile with a valid device in the journey's app."""

    model_config = ConfigDict(extra="forbid")

    app: JourneyIdText | None = None
    where: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, max_length=50, description="plan=pro, age>=18, country~FR,BE"
    )
    profile_ids: list[Listed] = Field(default_factory=list, max_length=20_000)
    emails: list[Listed] = Field(default_factory=list, max_length=20_000)
    segment: JourneyIdText | None = Field(
        default=None, description="a saved segment's name, alone: its profiles at each firing"
    )


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    journey_id: JourneyIdText
    version: int | None = Field(default=None, ge=1, description="default: the latest when fired")
    kind: Kind = Field(description="once, daily, weekly, or every (a fixed interval)")
    at: str | None = Field(
        default=None,
        max_length=32,
        description="once: a local date and time (2026-12-24T09:00); daily, weekly: a local "
        "time (09:00)",
    )
    weekday: (
        Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] | None
    ) = Field(default=None, description="weekly: the day")
    every: str | None = Field(default=None, max_length=32, description="every: a duration (6h)")
    time_zone: str = Field(default="UTC", max_length=64, description="IANA (Europe/Paris)")
    audience: ScheduleAudienceBody = Field(default_factory=ScheduleAudienceBody)
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")] | None = Field(
        default=None, description="default: sched-<journey>-<random>"
    )


class PauseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=500)


def invalid(field: str, message: str) -> ApiError:
    loc = ["body", *field.split(".")]
    return ApiError(422, "invalid_schedule", f"{field}: {message}", [{"loc": loc, "msg": message}])


def not_found(schedule_id: str) -> ApiError:
    return ApiError(404, "schedule_not_found", f"no schedule with id {schedule_id!r}")


def _audience(body: ScheduleAudienceBody) -> ScheduledAudience:
    where = []
    for index, text in enumerate(body.where):
        try:
            where.append(parse_where(text))
        except ValueError as error:
            raise invalid(f"audience.where.{index}", str(error)) from None
    return ScheduledAudience(
        app=body.app,
        where=where,
        profile_ids=list(body.profile_ids),
        emails=list(body.emails),
        segment=body.segment,
    )


@router.post(
    "",
    response_model=ScheduleView,
    status_code=status.HTTP_201_CREATED,
    responses=responses(409, 503),
)
async def create(body: ScheduleCreate, state: State, client: Temporal) -> ScheduleView:
    """Create a schedule. A journey not in the store (or triggered), a time zone that is not
    IANA, a time that does not parse or has passed answer 422 naming the field."""
    request = ScheduleRequest(
        journey_id=body.journey_id,
        cadence=Cadence(
            kind=body.kind,
            at=body.at,
            weekday=body.weekday,
            every=body.every,
            time_zone=body.time_zone,
        ),
        version=body.version,
        audience=_audience(body.audience),
        schedule_id=body.id,
    )
    try:
        return await create_schedule(client, state.db, state.settings, request)
    except ScheduleInvalid as error:
        raise invalid(error.field, error.message) from None
    except ScheduleExists as error:
        raise ApiError(409, "schedule_exists", str(error)) from None


@router.get("", response_model=Page[ScheduleView], responses=responses(503))
async def list_all(
    state: State,
    client: Temporal,
    journey_id: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[ScheduleView]:
    """Every schedule (one journey's), by id, each with its next firing times, whether it is
    paused, and its latest firing's run (or why it started none)."""
    after = decode_cursor(cursor, str)
    items = await list_schedules(
        client, state.db, journey_id=journey_id, after=after, limit=limit + 1
    )
    more = len(items) > limit
    items = items[:limit]
    return Page(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


@router.get("/{schedule_id}", response_model=ScheduleView, responses=responses(503))
async def one(schedule_id: ScheduleId, state: State, client: Temporal) -> ScheduleView:
    try:
        return await get_schedule(client, state.db, schedule_id)
    except ScheduleNotFound:
        raise not_found(schedule_id) from None


@router.post("/{schedule_id}/pause", response_model=ScheduleView, responses=responses(503))
async def pause(
    schedule_id: ScheduleId, state: State, client: Temporal, body: PauseBody | None = None
) -> ScheduleView:
    """No firing until resumed; a firing due while paused is not taken back later."""
    try:
        return await pause_schedule(client, state.db, schedule_id, body.note if body else None)
    except ScheduleNotFound as error:
        raise ApiError(404, "schedule_not_found", str(error)) from None


@router.post("/{schedule_id}/resume", response_model=ScheduleView, responses=responses(503))
async def resume(schedule_id: ScheduleId, state: State, client: Temporal) -> ScheduleView:
    try:
        return await resume_schedule(client, state.db, schedule_id)
    except ScheduleNotFound as error:
        raise ApiError(404, "schedule_not_found", str(error)) from None


@router.post("/{schedule_id}/trigger", response_model=ScheduleView, responses=responses(503))
async def trigger(schedule_id: ScheduleId, state: State, client: Temporal) -> ScheduleView:
    """Fire once now, besides the schedule's own times (also while paused)."""
    try:
        return await fire_now(client, state.db, schedule_id)
    except ScheduleNotFound as error:
        raise ApiError(404, "schedule_not_found", str(error)) from None


@router.delete(
    "/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(503),
)
async def delete(schedule_id: ScheduleId, state: State, client: Temporal) -> Response:
    """No more firings; the runs it started go on (cancel them under /v1/runs)."""
    try:
        await delete_schedule(client, state.db, schedule_id)
    except ScheduleNotFound:
        raise not_found(schedule_id) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
