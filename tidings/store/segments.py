"""Segment queries: the table's rows, and the profiles a definition selects (counted,
sampled, or paged by profile id), each one SQL query."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.journeys.segments import SegmentDefinition
from tidings.store.models import Journey, JourneySchedule, JourneyVersion, Profile, Segment
from tidings.store.pages import Page, keyset
from tidings.store.segment_sql import Dialect, SegmentQuery


def dialect_of(session: AsyncSession) -> Dialect:
    name = session.bind.dialect.name if session.bind is not None else "sqlite"
    return "postgresql" if name == "postgresql" else "sqlite"


def _matching(session: AsyncSession, definition: SegmentDefinition, as_of: datetime) -> Any:
    return SegmentQuery(dialect_of(session), as_of).condition(definition)


async def count_matching(
    session: AsyncSession, definition: SegmentDefinition, as_of: datetime
) -> int:
    statement = (
        select(func.count()).select_from(Profile).where(_matching(session, definition, as_of))
    )
    return int((await session.exec(statement)).one())


async def matching_ids(
    session: AsyncSession,
    definition: SegmentDefinition,
    as_of: datetime,
    *,
    after: str | None,
    limit: int,
) -> list[str]:
    """Up to ``limit`` matching profile ids after ``after``, in id order: a keyset page,
    the same on every call for the same store."""
    statement = select(col(Profile.id)).where(_matching(session, definition, as_of))
    if after is not None:
        statement = statement.where(col(Profile.id) > after)
    statement = statement.order_by(col(Profile.id)).limit(limit)
    return list((await session.exec(statement)).all())


async def segment_page(session: AsyncSession, after: str | None, limit: int) -> Page[Segment]:
    return await keyset(session, select(Segment), col(Segment.name), after, limit)


async def journeys_naming(session: AsyncSession, name: str) -> list[str]:
    """The stored journeys whose latest version takes this segment as its audience (few
    rows: journeys, not profiles)."""
    rows = await session.exec(
        select(col(JourneyVersion.journey_id), col(JourneyVersion.definition))
        .join(
            Journey,
            (col(Journey.id) == col(JourneyVersion.journey_id))
            & (col(Journey.latest_version) == col(JourneyVersion.version)),
        )
        .order_by(col(JourneyVersion.journey_id))
    )
    return [
        journey_id
        for journey_id, definition in rows.all()
        if ((definition or {}).get("audience") or {}).get("segment") == name
    ]


async def schedules_naming(session: AsyncSession, name: str) -> list[str]:
    """The schedules whose own audience is this segment."""
    rows = await session.exec(
        select(col(JourneySchedule.id), col(JourneySchedule.audience)).order_by(
            col(JourneySchedule.id)
        )
    )
    return [
        schedule_id
        for schedule_id, audience in rows.all()
        if (audience or {}).get("segment") == name
    ]
