"""Saved segments: named audience filters over profiles (their fields and attributes, their
devices, their interactions, the runs they were in). Create, list, read, replace, delete
(refused while a stored journey takes the segment as its audience), and preview: how many
profiles match now, and the first of their ids. A run takes one as its audience
(``POST /v1/runs`` with ``audience.segment``, or a journey file's ``audience: {segment}``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from tidings.api.deps import Admin, State
from tidings.api.errors import ERROR_RESPONSES, ApiError, responses
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.journeys.segments import NAME_PATTERN, SegmentInvalid, parse_segment
from tidings.runs.segments import (
    DEFAULT_SAMPLE,
    MAX_SAMPLE,
    SegmentExists,
    SegmentInUse,
    SegmentNotFound,
    SegmentPreview,
    SegmentView,
    create_segment,
    delete_segment,
    get_segment,
    list_segments,
    preview_definition,
    preview_segment,
    update_segment,
)

SegmentName = Annotated[
    str, Path(min_length=1, max_length=64, pattern=NAME_PATTERN, description="its name")
]
Sample = Annotated[
    int, Query(ge=0, le=MAX_SAMPLE, description="how many matching profile ids to show")
]
DEFINITION_HELP = (
    "the filter: one condition, an object with one key: all, any (lists), not, attribute, "
    "profile, device, interaction, run; e.g. {all: [{attribute: plan=pro}, {device: {app: "
    "shop}}]}"
)

router = APIRouter(
    prefix="/v1/segments", tags=["segments"], dependencies=[Admin], responses=ERROR_RESPONSES
)


class SegmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN, description="unique; lower-case slug")]
    description: str | None = Field(default=None, max_length=2000)
    definition: dict[str, Any] = Field(description=DEFINITION_HELP)


class SegmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000)
    definition: dict[str, Any] = Field(description=DEFINITION_HELP)


class DefinitionPreview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition: dict[str, Any] = Field(description=DEFINITION_HELP)


def invalid(error: SegmentInvalid) -> ApiError:
    details = [
        {"loc": ["body", "definition", *filter(None, p.field.split("."))], "msg": p.message}
        for p in error.problems
    ]
    return ApiError(422, "invalid_segment", f"definition: {error}", details)


def not_found(name: str) -> ApiError:
    return ApiError(404, "segment_not_found", f"no segment named {name!r}")


@router.post(
    "", response_model=SegmentView, status_code=status.HTTP_201_CREATED, responses=responses(409)
)
async def create(body: SegmentCreate, state: State) -> SegmentView:
    """Save a segment. A bad definition answers 422 `invalid_segment`, each problem's
    `loc` naming its field (`body.definition.all.0.attribute.op`); a name taken, 409."""
    try:
        return await create_segment(state.db, body.name, body.definition, body.description)
    except SegmentInvalid as error:
        raise invalid(error) from None
    except SegmentExists as error:
        raise ApiError(409, "segment_exists", str(error)) from None


@router.get("", response_model=Page[SegmentView])
async def list_all(state: State, cursor: Cursor = None, limit: Limit = 100) -> Page[SegmentView]:
    """Every segment, by name."""
    items, next_after = await list_segments(state.db, after=decode_cursor(cursor, str), limit=limit)
    return Page(items=items, next_cursor=encode_cursor(next_after))


@router.post("/preview", response_model=SegmentPreview)
async def preview_unsaved(
    body: DefinitionPreview, state: State, sample: Sample = DEFAULT_SAMPLE
) -> SegmentPreview:
    """Preview a definition without saving it: the count of matching profiles and the first
    `sample` of their ids."""
    try:
        definition = parse_segment(body.definition)
    except SegmentInvalid as error:
        raise invalid(error) from None
    return await preview_definition(state.db, definition, sample=sample)


@router.get("/{name}", response_model=SegmentView)
async def one(name: SegmentName, state: State) -> SegmentView:
    try:
        return await get_segment(state.db, name)
    except SegmentNotFound:
        raise not_found(name) from None


@router.put("/{name}", response_model=SegmentView)
async def replace(name: SegmentName, body: SegmentUpdate, state: State) -> SegmentView:
    """Replace a segment's definition and description. Runs already started keep the
    definition they started with; the next start reads the new one."""
    try:
        return await update_segment(state.db, name, body.definition, body.description)
    except SegmentInvalid as error:
        raise invalid(error) from None
    except SegmentNotFound:
        raise not_found(name) from None


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(409),
)
async def delete(name: SegmentName, state: State) -> Response:
    """Delete a segment (204). While a stored journey's latest version takes it as its
    audience the delete is refused: 409 `segment_in_use`, the journeys in `details`."""
    try:
        await delete_segment(state.db, name)
    except SegmentNotFound:
        raise not_found(name) from None
    except SegmentInUse as error:
        details = [{"loc": ["journey"], "msg": journey} for journey in error.journeys] + [
            {"loc": ["schedule"], "msg": schedule} for schedule in error.schedules
        ]
        raise ApiError(409, "segment_in_use", str(error), details) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/preview", response_model=SegmentPreview)
async def preview(
    name: SegmentName, state: State, sample: Sample = DEFAULT_SAMPLE
) -> SegmentPreview:
    """How many profiles the segment selects now, and the first `sample` of their ids (by
    id): what a run started now would take as its audience."""
    try:
        return await preview_segment(state.db, name, sample=sample)
    except SegmentNotFound:
        raise not_found(name) from None
