"""Journey runs: start one for an audience, list them, a run's progress, cancel it, its
report, and its pushes one by one. The same service layer (tidings.runs) serves the CLI, so
both give the same numbers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client

from tidings.api.deps import Admin, ApiState, State, Temporal, temporal_client
from tidings.api.errors import ERROR_RESPONSES, ApiError, responses
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.journeys.predicates import parse_where
from tidings.runs.audience import read_audience_text
from tidings.runs.cancel import CancelOutcome, cancel_run
from tidings.runs.errors import RunNotFound, StartError
from tidings.runs.experiments import PromotionOutcome, PromotionRefused, promote_winner
from tidings.runs.export import check_run, export_run
from tidings.runs.listing import RunSummary, get_run, list_runs
from tidings.runs.pushes import PushRecord, run_pushes
from tidings.runs.report import RunReport, run_report
from tidings.runs.start import AudienceChoice, load_stored, start_run
from tidings.runs.view import RunView, run_view
from tidings.store.journeys import stored_definition
from tidings.store.models import DeliveryStatus, RunStatus

RunId = Annotated[
    str,
    Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$", description="the run's id"),
]
JourneyIdText = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Listed = Annotated[str, Field(min_length=1, max_length=320)]

router = APIRouter(
    prefix="/v1/runs", tags=["runs"], dependencies=[Admin], responses=ERROR_RESPONSES
)


class AudienceBody(BaseModel):
    """Whom the run is for. Nothing given: the journey file's own `audience`, or else every
    profile with a valid device in the journey's app."""

    model_config = ConfigDict(extra="forbid")

    app: JourneyIdText | None = Field(
        default=None, description="every profile with a valid device in this app"
    )
    where: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list,
        max_length=50,
        description="attribute filters: plan=pro, age>=18, country~FR,BE, vip?",
    )
    profile_ids: list[Listed] = Field(default_factory=list, max_length=20_000)
    emails: list[Listed] = Field(default_factory=list, max_length=20_000)
    uploaded_list: str | None = Field(
        default=None,
        max_length=900_000,
        description="an uploaded file's text: profile ids and/or emails, one per line (a "
        "CSV's first column; a header row and # comments are skipped)",
    )
    segment: JourneyIdText | None = Field(
        default=None,
        description="a saved segment's name (/v1/segments): the profiles it selects when the "
        "run starts; nothing else may be given with it",
    )


class RunStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    journey_id: JourneyIdText
    version: int | None = Field(default=None, ge=1, description="default: the latest")
    audience: AudienceBody = Field(default_factory=AudienceBody)


class CancelAnswer(BaseModel):
    run_id: str
    already_finished: bool
    status: RunStatus


def run_not_found(run_id: str) -> ApiError:
    return ApiError(404, "run_not_found", f"no run with id {run_id!r}")


def _choice(body: AudienceBody) -> AudienceChoice:
    ids, emails = list(body.profile_ids), list(body.emails)
    if body.uploaded_list is not None:
        listed = read_audience_text(body.uploaded_list)
        ids += listed.profile_ids
        emails += listed.emails
    where = []
    for index, text in enumerate(body.where):
        try:
            where.append(parse_where(text))
        except ValueError as error:
            raise ApiError(
                422,
                "invalid_filter",
                str(error),
                [{"loc": ["body", "audience", "where", str(index)], "msg": str(error)}],
            ) from None
    return AudienceChoice(ids, emails, where, body.app, body.segment)


@router.post(
    "",
    response_model=RunSummary,
    status_code=status.HTTP_201_CREATED,
    responses=responses(409, 503),
)
async def start(body: RunStart, state: State, client: Temporal) -> RunSummary:
    """Start a stored journey for an audience. A filter no profile matches, an unknown
    listed profile or app answer 422 and start nothing; a triggered journey answers 409
    (enable it under /v1/triggers)."""
    choice = _choice(body.audience)
    async with state.db.read() as session:
        found = await stored_definition(session, body.journey_id, body.version)
    if found is None:
        which = f"version {body.version} of journey" if body.version else "journey"
        raise ApiError(404, "journey_not_found", f"{which} {body.journey_id!r} is not in the store")
    try:
        journey = await load_stored(state.db, body.journey_id, body.version)
    except StartError as error:
        raise ApiError(422, "cannot_start", str(error)) from None
    if journey.trigger is not None:
        raise ApiError(
            409,
            "journey_is_triggered",
            f"journey {journey.id!r} starts on the event {journey.trigger.event!r}: enable it "
            f"with POST /v1/triggers/{journey.id}/enable",
        )
    try:
        started = await start_run(client, state.db, state.settings, journey, audience=choice)
    except StartError as error:
        raise ApiError(422, "cannot_start", str(error)) from None
    summary = await get_run(state.db, started.run_id)
    assert summary is not None
    return summary


@router.get("", response_model=Page[RunSummary])
async def list_all(
    state: State,
    journey_id: Annotated[str | None, Query(max_length=64)] = None,
    run_status: Annotated[RunStatus | None, Query(alias="status")] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[RunSummary]:
    """By descending id (one journey's runs newest first), filtered by journey and status."""
    before = decode_cursor(cursor, str)
    items = await list_runs(
        state.db, journey_id=journey_id, status=run_status, before=before, limit=limit + 1
    )
    more = len(items) > limit
    items = items[:limit]
    return Page(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


async def _temporal_if_running(run_id: str, state: ApiState) -> Client | None:
    """Temporal's client when the run is still running (what it says then comes from its
    workflows); a run that has ended is read from the store, with Temporal down too."""
    summary = await get_run(state.db, run_id)
    if summary is None:
        raise run_not_found(run_id)
    return await temporal_client(state) if summary.status == RunStatus.RUNNING else None


@router.get("/{run_id}", response_model=RunView, responses=responses(503))
async def progress(run_id: RunId, state: State) -> RunView:
    """Where the run stands: profiles per node and live counts while it runs (from its
    workflows; 503 when Temporal cannot be reached), its final counts once it has ended (from
    the store)."""
    client = await _temporal_if_running(run_id, state)
    try:
        return await run_view(client, state.db, run_id)
    except RunNotFound:
        raise run_not_found(run_id) from None


@router.post("/{run_id}/cancel", response_model=CancelAnswer, responses=responses(503))
async def cancel(run_id: RunId, state: State) -> CancelAnswer:
    """No new sends; the sends in flight settle. A run that has ended answers
    `already_finished`."""
    client = await _temporal_if_running(run_id, state)
    if client is None:
        outcome = CancelOutcome(run_id, already_finished=True)
    else:
        try:
            outcome = await cancel_run(client, state.db, run_id)
        except RunNotFound:
            raise run_not_found(run_id) from None
    summary = await get_run(state.db, run_id)
    assert summary is not None
    return CancelAnswer(
        run_id=run_id, already_finished=outcome.already_finished, status=summary.status
    )


class PromoteBody(BaseModel):
    """An experiment split to promote: its clear winner, or ``branch`` (your own call)."""

    model_config = ConfigDict(extra="forbid")

    node_id: str = Field(min_length=1, max_length=64, description="the experiment split")
    branch: int | None = Field(
        default=None, ge=0, le=99, description="default: the winner, once one is clear"
    )


# refusals that are about the run's state rather than the request
PROMOTION_CONFLICTS = {"already_promoted", "run_finished"}


@router.post("/{run_id}/promote", response_model=PromotionOutcome, responses=responses(409, 503))
async def promote(run_id: RunId, body: PromoteBody, state: State) -> PromotionOutcome:
    """Profiles that reach the experiment split from now on all take its winner. Refused
    (`422 no_clear_winner`, with the verdict) until a winner is clear, unless `branch` is
    named; `409` for a split promoted to another branch before, or a run that has ended."""
    summary = await get_run(state.db, run_id)
    if summary is None:
        raise run_not_found(run_id)
    client = await temporal_client(state)
    try:
        return await promote_winner(
            client, state.db, run_id, body.node_id, branch=body.branch, by="api"
        )
    except RunNotFound:
        raise run_not_found(run_id) from None
    except PromotionRefused as refused:
        status_code = 409 if refused.code in PROMOTION_CONFLICTS else 422
        field = "branch" if refused.code in {"unknown_branch", "already_promoted"} else "node_id"
        raise ApiError(
            status_code, refused.code, str(refused), [{"loc": [field], "msg": str(refused)}]
        ) from None


@router.get("/{run_id}/report", response_model=RunReport)
async def report(run_id: RunId, state: State) -> RunReport:
    """The funnel of each push node (targeted, sent, delivered, failed, not sent by reason,
    opened, clicked), tokens invalidated, and each random_split branch's size and conversion
    to the journey's goal."""
    try:
        return await run_report(state.db, run_id)
    except RunNotFound:
        raise run_not_found(run_id) from None


@router.get("/{run_id}/pushes", response_model=Page[PushRecord])
async def pushes(
    run_id: RunId,
    state: State,
    outcome: Annotated[DeliveryStatus | None, Query()] = None,
    node_id: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> Page[PushRecord]:
    """The run's pushes in the order they were planned: profile, device, tracking id and
    outcome (the ledger's status, with its reason)."""
    after = decode_cursor(cursor, int)
    try:
        items = await run_pushes(
            state.db,
            run_id,
            after=after,
            limit=limit + 1,
            outcome=outcome.value if outcome is not None else None,
            node_id=node_id,
        )
    except RunNotFound:
        raise run_not_found(run_id) from None
    more = len(items) > limit
    items = items[:limit]
    return Page(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


@router.get(
    "/{run_id}/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {}},
            "description": "one JSON record a line: the run, then each push, then each interaction",
        }
    },
)
async def export(run_id: RunId, state: State) -> StreamingResponse:
    """Every push of the run and every interaction reported on them, streamed as NDJSON
    (`application/x-ndjson`): the first line is the run (`"record": "run"`), then the pushes
    in ledger order (`"record": "push"`, as `/pushes` shows them), then the interactions
    (`"record": "interaction"`). Read page by page from the store, however large the run."""
    try:
        await check_run(state.db, run_id)
    except RunNotFound:
        raise run_not_found(run_id) from None
    return StreamingResponse(
        export_run(state.db, run_id),
        media_type="application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="{run_id}.ndjson"'},
    )
