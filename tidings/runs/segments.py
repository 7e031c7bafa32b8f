"""Saved segments, shared by the API, the CLI and the console: create, list, read, update,
delete (refused while a stored journey names the segment as its audience), and preview (how
many profiles match now, and a few of their ids)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tidings.journeys.segments import (
    NAME_PATTERN,
    SegmentDefinition,
    SegmentInvalid,
    SegmentProblem,
    parse_segment,
)
from tidings.store.db import Database
from tidings.store.models import Segment
from tidings.store.segments import (
    count_matching,
    journeys_naming,
    matching_ids,
    schedules_naming,
    segment_page,
)
from tidings.store.types import utcnow

DEFAULT_SAMPLE = 10
MAX_SAMPLE = 100


class SegmentNotFound(LookupError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no segment named {name!r}")


class SegmentExists(ValueError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a segment named {name!r} exists already")


class SegmentInUse(ValueError):
    """A stored journey or a schedule takes the segment as its audience: deleting it would
    leave the journey's next start (or the schedule's next firing) without one."""

    def __init__(self, name: str, journeys: list[str], schedules: list[str]) -> None:
        self.name = name
        self.journeys = journeys
        self.schedules = schedules
        users = [f"journey {j!r}" for j in journeys] + [f"schedule {s!r}" for s in schedules]
        super().__init__(
            f"segment {name!r} is the audience of {', '.join(users)}: give "
            f"{'it' if len(users) == 1 else 'them'} another audience (a journey: save a new "
            "version; a schedule: delete it) before deleting the segment"
        )


class SegmentView(BaseModel):
    name: str
    description: str | None
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SegmentPreview(BaseModel):
    """How many profiles match now, and the first of them by id."""

    name: str | None = Field(description="the saved segment previewed; null for a definition")
    count: int
    sample: list[str]
    as_of: datetime = Field(description="the moment 'in the last N days' counted back from")


def _view(row: Segment) -> SegmentView:
    return SegmentView(
        name=row.name,
        description=row.description,
        definition=_as_written(row.definition),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _as_written(stored: dict[str, Any]) -> dict[str, Any]:
    """The definition in its fields' order (PostgreSQL's JSONB keeps keys in an order of
    its own)."""
    try:
        return parse_segment(stored).to_data()
    except SegmentInvalid:
        return stored


def _checked_name(name: str) -> str:
    if not re.fullmatch(NAME_PATTERN, name):
        raise SegmentInvalid(
            [SegmentProblem("name", "lower-case letters, digits, - and _, at most 64")]
        )
    return name


async def create_segment(
    db: Database, name: str, definition: Any, description: str | None = None
) -> SegmentView:
    parsed = parse_segment(definition)
    _checked_name(name)
    now = utcnow()
    async with db.write() as session:
        if await session.get(Segment, name) is not None:
            raise SegmentExists(name)
        row = Segment(
            name=name,
            description=description,
            definition=parsed.to_data(),
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await session.flush()
        return _view(row)


async def update_segment(
    db: Database, name: str, definition: Any, description: str | None = None
) -> SegmentView:
    """Replace a segment's definition (and description). Runs already started keep the
    definition they started with."""
    parsed = parse_segment(definition)
    async with db.write() as session:
        row = await session.get(Segment, name)
        if row is None:
            raise SegmentNotFound(name)
        row.definition = parsed.to_data()
        row.description = description
        row.updated_at = utcnow()
        session.add(row)
        await session.flush()
        return _view(row)


async def get_segment(db: Database, name: str) -> SegmentView:
    async with db.read() as session:
        row = await session.get(Segment, name)
    if row is None:
        raise SegmentNotFound(name)
    return _view(row)


async def list_segments(
    db: Database, *, after: str | None = None, limit: int = 100
) -> tuple[list[SegmentView], str | None]:
    """Segments by name; the name to continue after, when more follow."""
    async with db.read() as session:
        page = await segment_page(session, after, limit)
    return [_view(row) for row in page.items], page.next_after


async def delete_segment(db: Database, name: str) -> None:
    async with db.write() as session:
        row = await session.get(Segment, name)
        if row is None:
            raise SegmentNotFound(name)
        journeys = await journeys_naming(session, name)
        schedules = await schedules_naming(session, name)
        if journeys or schedules:
            raise SegmentInUse(name, journeys, schedules)
        await session.delete(row)


async def load_segment(db: Database, name: str) -> SegmentDefinition:
    """A saved segment's definition, as a run takes it."""
    view = await get_segment(db, name)
    return parse_segment(view.definition)


async def preview_definition(
    db: Database,
    definition: SegmentDefinition,
    *,
    sample: int = DEFAULT_SAMPLE,
    name: str | None = None,
    as_of: datetime | None = None,
) -> SegmentPreview:
    """Count the matching profiles and read the first ``sample`` ids: two queries, the
    profiles never loaded."""
    moment = as_of or utcnow()
    size = max(0, min(sample, MAX_SAMPLE))
    async with db.read() as session:
        count = await count_matching(session, definition, moment)
        ids = (
            await matching_ids(session, definition, moment, after=None, limit=size) if size else []
        )
    return SegmentPreview(name=name, count=count, sample=ids, as_of=moment)


async def preview_segment(
    db: Database, name: str, *, sample: int = DEFAULT_SAMPLE
) -> SegmentPreview:
    return await preview_definition(db, await load_segment(db, name), sample=sample, name=name)
