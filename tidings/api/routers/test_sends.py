"""Test sends: one push node of a stored journey, rendered for a profile, sent to chosen
devices without a run (tidings.runs.test_sends). The request is checked and recorded here;
a worker sends it (workflows/test_send.py), so this process never loads a provider SDK."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from temporalio.exceptions import TemporalError

from tidings.api.deps import Admin, State, temporal_client
from tidings.api.errors import ERROR_RESPONSES, ApiError, responses
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.runs.test_sends import (
    MAX_DEVICES,
    MAX_WAIT_S,
    TestSendAsk,
    TestSendProblem,
    TestSendView,
    get_test_send,
    prepare,
    record_and_start,
    view_of,
    wait_for_outcome,
)
from tidings.store.test_sends import list_test_sends

TestSendId = Annotated[
    str, Path(pattern=r"^ts-[0-9a-f]{16}$", description="the test send's id (`ts-...`)")
]
JourneyIdText = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
NodeIdText = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")]
DEFAULT_WAIT_S = 10.0

router = APIRouter(
    prefix="/v1/test-sends", tags=["test sends"], dependencies=[Admin], responses=ERROR_RESPONSES
)


class TestSendBody(BaseModel):
    """Send one push node to devices. No device named: every valid device the profile has
    in the journey's app."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid")

    journey_id: JourneyIdText
    version: int | None = Field(default=None, ge=1, le=2**31 - 1, description="default: latest")
    node_id: NodeIdText = Field(description="a push node of the journey")
    profile_id: str = Field(
        min_length=1, max_length=128, description="whose attributes the push is rendered with"
    )
    device_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        default_factory=list, max_length=MAX_DEVICES, description="devices of the journey's app"
    )
    tokens: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list,
        max_length=MAX_DEVICES,
        description="devices by token, registered in the journey's app",
    )
    wait_s: float = Field(
        default=DEFAULT_WAIT_S,
        ge=0,
        le=MAX_WAIT_S,
        description="how long to wait for the outcome before answering 202 (0: 202 at once)",
    )


def _location(test_send_id: str) -> str:
    return f"/v1/test-sends/{test_send_id}"


@router.post(
    "",
    response_model=TestSendView,
    status_code=status.HTTP_201_CREATED,
    responses={
        202: {
            "model": TestSendView,
            "description": "Recorded and handed to the workers, not finished within `wait_s`: "
            "poll `Location`",
        },
        **responses(503),
    },
)
async def send(body: TestSendBody, state: State, response: Response) -> TestSendView:
    """Render the push node for the profile and send it to the devices, outside any run.
    Answers `201` with each device's outcome once the worker sent it (within `wait_s`),
    else `202` with `Location` to poll. An unknown journey or version answers 404; a node
    that is not a push, an unknown profile or device, a device of another app or one no
    longer valid, a push that cannot be rendered for the profile answer 422 naming the field.
    """
    ask = TestSendAsk(
        journey_id=body.journey_id,
        node_id=body.node_id,
        profile_id=body.profile_id,
        version=body.version,
        device_ids=body.device_ids,
        tokens=body.tokens,
        requested_by="api",
    )
    try:
        row = await prepare(state.db, state.settings, ask)
    except TestSendProblem as problem:
        raise ApiError(
            problem.status,
            problem.code,
            problem.message,
            [{"loc": ["body", problem.field], "msg": problem.message}],
        ) from None
    # checked before Temporal is needed: a bad request is told so even with Temporal down
    client = await temporal_client(state)
    try:
        started = await record_and_start(client, state.db, state.settings, row)
    except (RuntimeError, TemporalError) as error:
        raise ApiError(
            503, "temporal_unavailable", f"Temporal refused the test send: {error}"
        ) from None
    finished = started
    if body.wait_s > 0:
        finished = await wait_for_outcome(client, state.db, started.id, body.wait_s) or started
    response.headers["Location"] = _location(started.id)
    if finished.status == "pending":
        response.status_code = status.HTTP_202_ACCEPTED
    return finished


@router.get("/{test_send_id}", response_model=TestSendView)
async def read(test_send_id: TestSendId, state: State) -> TestSendView:
    """A test send: its push as rendered, and each device's outcome (`pending` until the
    worker sent it)."""
    found = await get_test_send(state.db, test_send_id)
    if found is None:
        raise ApiError(404, "test_send_not_found", f"no test send with id {test_send_id!r}")
    return found


@router.get("", response_model=Page[TestSendView])
async def listed(
    state: State,
    journey_id: Annotated[
        str | None, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="one journey's")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[TestSendView]:
    """Test sends, newest first."""
    before = _decode(decode_cursor(cursor, str))
    async with state.db.read() as session:
        rows = await list_test_sends(session, journey_id=journey_id, limit=limit + 1, before=before)
    page, more = rows[:limit], len(rows) > limit
    last = page[-1] if more and page else None
    return Page(
        items=[view_of(row) for row in page],
        next_cursor=encode_cursor(f"{last.created_at.isoformat()}|{last.id}") if last else None,
    )


def _decode(key: str | None) -> tuple[datetime, str] | None:
    if key is None:
        return None
    at, _, row_id = key.partition("|")
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or not row_id:
        raise ApiError(
            422,
            "invalid_cursor",
            "the cursor is not one this list gave out; pass `next_cursor` of the previous page",
            [{"loc": ["query", "cursor"], "msg": "unknown cursor"}],
        )
    return moment, row_id
