"""Journeys: save a new version (YAML or JSON), list them, get one with its versions, and
validate a definition without saving it. Problems are named by node and field, as
`tidings journeys validate` prints them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status

from tidings.api.deps import Admin, State
from tidings.api.errors import ERROR_RESPONSES, ApiError, responses
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.runs.journeys import (
    JourneyDetail,
    JourneyProblems,
    JourneySummary,
    SavedJourney,
    TextFormat,
    ValidationResult,
    definition_from_text,
    get_journey,
    list_journeys,
    save_definition,
    validate_in_store,
)

JourneyId = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="the journey's id")
]

router = APIRouter(
    prefix="/v1/journeys", tags=["journeys"], dependencies=[Admin], responses=ERROR_RESPONSES
)

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
DEFINITION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A journey definition: YAML (`application/yaml`) or JSON, as in a "
        "journey file",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


async def _definition_text(request: Request) -> tuple[str, TextFormat]:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json":
        text_format: TextFormat = "json"
    elif media in YAML_TYPES:
        text_format = "yaml"
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the journey as application/json or application/yaml",
        )
    body = await request.body()
    try:
        return body.decode("utf-8"), text_format
    except UnicodeDecodeError:
        raise ApiError(422, "invalid_journey", "the journey is not UTF-8 text") from None


def invalid_journey(error: JourneyProblems) -> ApiError:
    return ApiError(
        422,
        "invalid_journey",
        f"the journey has {len(error.problems)} problem(s): {error}",
        [
            {
                "loc": [p.node or "journey", p.field],
                "msg": p.message,
                "node": p.node,
                "field": p.field,
            }
            for p in error.problems
        ],
    )


@router.get("", response_model=Page[JourneySummary])
async def list_all(state: State, cursor: Cursor = None, limit: Limit = 50) -> Page[JourneySummary]:
    after = decode_cursor(cursor, str)
    items = await list_journeys(state.db, after=after, limit=limit + 1)
    more = len(items) > limit
    items = items[:limit]
    return Page(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


@router.post(
    "",
    response_model=SavedJourney,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=DEFINITION_BODY,
    responses={
        200: {"model": SavedJourney, "description": "Equal to the latest version: not stored"},
        **responses(415),
    },
)
async def save(request: Request, response: Response, state: State) -> SavedJourney:
    """Store the definition as the journey's newest version. The same definition as the
    latest version answers 200 and stores nothing."""
    text, text_format = await _definition_text(request)
    try:
        journey = definition_from_text(text, text_format)
    except JourneyProblems as error:
        raise invalid_journey(error) from None
    saved = await save_definition(state.db, journey)
    if not saved.created:
        response.status_code = status.HTTP_200_OK
    return saved


@router.post(
    "/validate",
    response_model=ValidationResult,
    openapi_extra=DEFINITION_BODY,
    responses=responses(415),
)
async def validate(request: Request, state: State) -> ValidationResult:
    """Check a definition without saving it: every problem, by node and field (an app the
    store lacks among them), and every warning (a template variable nothing provides)."""
    text, text_format = await _definition_text(request)
    return await validate_in_store(state.db, text, text_format)


@router.get("/{journey_id}", response_model=JourneyDetail)
async def get_one(journey_id: JourneyId, state: State) -> JourneyDetail:
    """The journey with every version (newest first) and how many runs it had."""
    found = await get_journey(state.db, journey_id)
    if found is None:
        raise ApiError(404, "journey_not_found", f"no journey with id {journey_id!r}")
    return found
