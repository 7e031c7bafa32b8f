"""Triggered journeys: enable one on its event, disable it, and inspect them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path
from pydantic import BaseModel, ConfigDict, Field

from tidings.api.deps import Admin, State
from tidings.api.errors import ERROR_RESPONSES, ApiError, responses
from tidings.api.pagination import Page
from tidings.runs.errors import StartError
from tidings.runs.triggers import (
    TriggerNotFound,
    TriggerState,
    disable_trigger,
    enable_trigger,
    list_triggers,
    trigger_state,
)
from tidings.store.journeys import stored_definition

JourneyId = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="the journey's id")
]

router = APIRouter(
    prefix="/v1/triggers", tags=["triggers"], dependencies=[Admin], responses=ERROR_RESPONSES
)


class EnableBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(default=None, ge=1, description="default: the latest")


def not_enabled_yet(error: TriggerNotFound) -> ApiError:
    return ApiError(404, "trigger_not_found", str(error))


@router.get("", response_model=Page[TriggerState])
async def list_all(state: State) -> Page[TriggerState]:
    """Every journey ever enabled on its event, by journey id (one page)."""
    return Page(items=await list_triggers(state.db), next_cursor=None)


@router.get("/{journey_id}", response_model=TriggerState)
async def inspect(journey_id: JourneyId, state: State) -> TriggerState:
    """Whether the journey takes entries, its activation (a run whose report counts every
    entry) and how many profiles entered."""
    try:
        return await trigger_state(state.db, journey_id)
    except TriggerNotFound as error:
        raise not_enabled_yet(error) from None


@router.post("/{journey_id}/enable", response_model=TriggerState, responses=responses(409))
async def enable(
    journey_id: JourneyId,
    state: State,
    body: Annotated[EnableBody | None, Body()] = None,
) -> TriggerState:
    """From now on the journey's event starts it for the event's profile. Enabling again
    (a newer version) supersedes the earlier activation: its entries finish on their
    snapshot."""
    version = body.version if body is not None else None
    async with state.db.read() as session:
        found = await stored_definition(session, journey_id, version)
    if found is None:
        which = f"version {version} of journey" if version is not None else "journey"
        raise ApiError(404, "journey_not_found", f"{which} {journey_id!r} is not in the store")
    try:
        return await enable_trigger(state.db, journey_id, version)
    except StartError as error:
        raise ApiError(409, "cannot_enable", str(error)) from None


@router.post("/{journey_id}/disable", response_model=TriggerState, responses=responses(409))
async def disable(journey_id: JourneyId, state: State) -> TriggerState:
    """No new entries; entries in flight finish (cancel the activation's run to stop them
    too)."""
    try:
        return await disable_trigger(state.db, journey_id)
    except TriggerNotFound as error:
        raise not_enabled_yet(error) from None
    except StartError as error:
        raise ApiError(409, "not_enabled", str(error)) from None
