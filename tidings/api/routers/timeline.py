"""A profile's timeline: the pushes sent to it and the interactions its devices reported."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from tidings.api.deps import Admin, State
from tidings.api.errors import ERROR_RESPONSES, ApiError
from tidings.api.types import IDENTIFIER
from tidings.runs.pushes import ProfileNotFound, TimelineEntry, profile_timeline

ProfileId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=IDENTIFIER, description="the profile's id")
]

router = APIRouter(
    prefix="/v1/profiles", tags=["profiles"], dependencies=[Admin], responses=ERROR_RESPONSES
)


class Timeline(BaseModel):
    profile_id: str
    items: list[TimelineEntry]


@router.get("/{profile_id}/timeline", response_model=Timeline)
async def timeline(
    profile_id: ProfileId,
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many of each kind")] = 200,
) -> Timeline:
    """The profile's latest pushes and the interactions reported on them, oldest first."""
    try:
        items = await profile_timeline(state.db, profile_id, limit=limit)
    except ProfileNotFound:
        raise ApiError(404, "profile_not_found", f"no profile with id {profile_id!r}") from None
    return Timeline(profile_id=profile_id, items=items)
