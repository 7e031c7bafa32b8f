"""Interaction reports (delivered, opened, clicked with an action id, dismissed), by tracking
id. Each is committed before the answer and forwarded to its journey afterwards (DESIGN.md
decision 6)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from tidings.api.deps import Caller, CallerOf, ReadSession, State, WriteSession
from tidings.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.api.types import LABEL, UtcDatetime
from tidings.push.masking import mask_token
from tidings.store.interactions import (
    InteractionReport,
    Recorded,
    Submitted,
    default_event_id,
    forward_state,
    list_interactions,
    requeue_failed,
)
from tidings.store.models import Interaction, InteractionKind, InteractionStatus
from tidings.store.outbox import ForwardState
from tidings.store.types import utcnow

MAX_BATCH = 100
TrackingId = Annotated[str, Field(min_length=1, max_length=64, pattern=LABEL)]

router = APIRouter(prefix="/v1/interactions", tags=["interactions"], responses=ERROR_RESPONSES)


class InteractionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_id: TrackingId = Field(description="the `trackingId` the push carried")
    kind: InteractionKind
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=LABEL,
        description="idempotency key, unique within the app (another app's ids never "
        "collide); default: tracking id + kind + action id (one report of each kind and "
        "action per push). Reusing one for another tracking id, kind or action is a 409.",
    )
    action_id: str | None = Field(
        default=None, max_length=128, pattern=LABEL, description="clicked: the action's id"
    )
    occurred_at: UtcDatetime | None = Field(
        default=None, description="when it happened on the device; default: on arrival"
    )
    device_token: str | None = Field(
        default=None, max_length=4096, description="kept masked, for inspection"
    )


class InteractionAccepted(BaseModel):
    event_id: str
    status: InteractionStatus
    duplicate: bool = Field(description="this event id was reported before; nothing changed")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"model": ErrorResponse, "description": "Unknown tracking id (kept for inspection)"},
        409: {
            "model": ErrorResponse,
            "description": "The event id was used before for another report (nothing stored)",
        },
    },
)
async def report(body: InteractionIn, state: State, caller: CallerOf) -> InteractionAccepted:
    """Stored (and committed) before the answer; forwarded to the journey afterwards. An app's
    key may report only interactions with that app's pushes. Reporting the same event again
    is a duplicate (202, nothing changes)."""
    [recorded] = await state.recorder.record_all([_submitted(body, caller)])
    if recorded.conflict is not None:
        raise ApiError(409, "event_id_reused", recorded.conflict)
    if recorded.forbidden or recorded.status is None:
        raise ApiError(403, "forbidden", "this tracking id belongs to another app's push")
    if recorded.status is InteractionStatus.UNMATCHED:
        raise ApiError(
            404,
            "unknown_tracking_id",
            f"no push has tracking id {body.tracking_id!r}; the report was kept for "
            f"inspection as event {recorded.event_id!r}",
        )
    return InteractionAccepted(
        event_id=recorded.event_id, status=recorded.status, duplicate=not recorded.created
    )


def _submitted(body: InteractionIn, caller: Caller) -> Submitted:
    return Submitted(
        InteractionReport(
            event_id=body.event_id or default_event_id(body.tracking_id, body.kind, body.action_id),
            tracking_id=body.tracking_id,
            kind=body.kind,
            action_id=body.action_id,
            occurred_at=body.occurred_at or utcnow(),
            source="api",
            device_token_hint=mask_token(body.device_token) if body.device_token else None,
        ),
        caller.app_id,
    )


class InteractionBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[InteractionIn] = Field(min_length=1, max_length=MAX_BATCH)


Outcome = Literal["accepted", "duplicate", "unknown_tracking_id", "forbidden", "event_id_reused"]


class BatchItemOutcome(BaseModel):
    index: int = Field(description="the item's position in the request")
    event_id: str
    outcome: Outcome = Field(
        description="accepted (stored now); duplicate (stored before, nothing changed); "
        "unknown_tracking_id (no such push: kept for inspection); forbidden (another app's "
        "push: not stored); event_id_reused (the event id names another report: not stored)"
    )
    message: str | None = Field(default=None, description="why, for event_id_reused")


class BatchOutcome(BaseModel):
    accepted: int
    items: list[BatchItemOutcome] = Field(description="one answer per item, in request order")


def _outcome(recorded: Recorded) -> Outcome:
    if recorded.conflict is not None:
        return "event_id_reused"
    if recorded.forbidden or recorded.status is None:
        return "forbidden"
    if recorded.status is InteractionStatus.UNMATCHED:
        return "unknown_tracking_id"
    return "accepted" if recorded.created else "duplicate"


@router.post("/batch", status_code=status.HTTP_202_ACCEPTED)
async def report_batch(body: InteractionBatch, state: State, caller: CallerOf) -> BatchOutcome:
    """Up to 100 reports in one request (for backends relaying many devices' events), every
    one stored before the answer and answered by position."""
    recorded = await state.recorder.record_all([_submitted(item, caller) for item in body.items])
    items = [
        BatchItemOutcome(index=index, event_id=r.event_id, outcome=_outcome(r), message=r.conflict)
        for index, r in enumerate(recorded)
    ]
    return BatchOutcome(accepted=sum(1 for i in items if i.outcome == "accepted"), items=items)


class InteractionPublic(BaseModel):
    event_id: str
    tracking_id: str
    kind: InteractionKind
    action_id: str | None
    status: InteractionStatus = Field(
        description="matched (its tracking id names a push) or unmatched (kept for inspection)"
    )
    app_id: str | None
    node_id: str | None
    source: str
    occurred_at: datetime
    received_at: datetime
    forwarding: ForwardState = Field(
        description="pending (waiting for the forwarder, perhaps until next_attempt_at); "
        "forwarded; failed (Temporal kept refusing it: given up, see forward_note); never "
        "(unmatched: no journey to tell)"
    )
    forwarded_at: datetime | None = Field(description="when its journey was signalled")
    forward_attempts: int
    next_attempt_at: datetime | None = Field(
        description="a refused row waits until then before it is tried again"
    )
    forward_failed_at: datetime | None = Field(description="when forwarding was given up")
    forward_note: str | None = Field(description="why the last forward failed, or a note")

    @classmethod
    def of(cls, row: Interaction) -> InteractionPublic:
        return cls(
            event_id=row.event_id,
            tracking_id=row.tracking_id,
            kind=InteractionKind(row.kind),
            action_id=row.action_id,
            status=InteractionStatus(row.status),
            app_id=row.app_id,
            node_id=row.node_id,
            source=row.source,
            occurred_at=row.occurred_at,
            received_at=row.received_at,
            forwarding=forward_state(row),
            forwarded_at=row.forwarded_at,
            forward_attempts=row.forward_attempts,
            next_attempt_at=row.next_attempt_at,
            forward_failed_at=row.forward_failed_at,
            forward_note=row.last_error,
        )


@router.get("")
async def list_all(
    session: ReadSession,
    caller: CallerOf,
    interaction_status: Annotated[
        InteractionStatus | None, Query(alias="status", description="only this status")
    ] = None,
    tracking_id: Annotated[str | None, Query(min_length=1, max_length=64, pattern=LABEL)] = None,
    forwarding: Annotated[
        ForwardState | None,
        Query(description="only this forwarding state, e.g. failed: what needs a look"),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[InteractionPublic]:
    """Stored interactions, oldest first: an app's key sees its app's (matched ones, and the
    unmatched ones it reported)."""
    page = await list_interactions(
        session,
        app_id=caller.app_id,
        status=interaction_status,
        tracking_id=tracking_id,
        forwarding=forwarding,
        after=decode_cursor(cursor, int),
        limit=limit,
    )
    return Page(
        items=[InteractionPublic.of(row) for row in page.items],
        next_cursor=encode_cursor(page.next_after),
    )


class RequeueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_ids: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None,
        max_length=1000,
        description="only these; default: every interaction the forwarder gave up on",
    )


class Requeued(BaseModel):
    requeued: int = Field(description="interactions given back to the forwarder")


@router.post("/requeue")
async def requeue(body: RequeueIn, session: WriteSession, caller: CallerOf) -> Requeued:
    """Give interactions the forwarder gave up on (`?forwarding=failed`) another round of
    attempts, once what Temporal refused them for is fixed. An app's key requeues only its
    app's."""
    count = await requeue_failed(session, app_id=caller.app_id, event_ids=body.event_ids)
    return Requeued(requeued=count)
