"""Custom events (``POST /v1/events``): a profile did something the journeys care about.

The event is stored (idempotent on its id) and committed before the ``202``; the forwarder
beside the workers then starts the journeys whose trigger it is (one cohort per profile, by
signal-with-start) and signals the running journeys that wait for it (goal, wait_for), as it
forwards interactions (DESIGN.md decision 6). The API holds no Temporal connection for
events: while Temporal is down they wait in the store. ``GET /v1/events/{event_id}`` says
what forwarding did; ``GET /v1/events?forwarding=failed`` lists the events Temporal kept
refusing, and ``POST /v1/events/requeue`` gives them another round.

An event names its profile by ``profile_id`` or by ``app_user_id`` (the app's own user id,
through the user mapping: the caller's app, or ``app`` for the admin key); an unknown one
answers 404 ``unknown_profile`` / ``unknown_app_user``, and no profile is ever created by an
event. An app's key may post events only for the profiles its app knows (one of its devices
or user mappings names the profile); the admin key for any profile. Any other profile answers the
same 404 as a profile that does not exist, so a key never learns which profiles other apps
hold. An app's key lists, reads and requeues only the events it posted.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.api.deps import Caller, CallerOf, ReadSession, State, WriteSession
from tidings.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.api.types import AppUserIdText
from tidings.journeys.predicates import EventName
from tidings.observe.tracing import current_traceparent
from tidings.store.custom_events import (
    EventReport,
    forward_state,
    list_events,
    requeue_failed,
    store_event,
)
from tidings.store.mappings import find_mapping
from tidings.store.models import CustomEvent, Profile
from tidings.store.outbox import ForwardState
from tidings.store.profiles import known_to_app
from tidings.store.types import utcnow

MAX_PROPERTIES_BYTES = 16_384

router = APIRouter(
    prefix="/v1/events",
    tags=["events"],
    responses={
        **ERROR_RESPONSES,
        404: {
            "model": ErrorResponse,
            "description": "Unknown profile (for an app's key: a profile its app does not know)",
        },
        409: {"model": ErrorResponse, "description": "The event id was used for another event"},
    },
)


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    app_user_id: AppUserIdText | None = Field(
        default=None,
        description="instead of profile_id: the app's own user id, through the user mapping",
    )
    app: str | None = Field(
        default=None,
        max_length=64,
        description="the app whose user `app_user_id` is: required with the admin key; an "
        "app's key may only name its own app (the default)",
    )
    name: EventName
    event_id: Annotated[
        str, Field(min_length=1, max_length=120, description="idempotency key of the event")
    ]
    properties: dict[str, Any] = Field(default_factory=dict)
    occurred_at: AwareDatetime | None = None

    @field_validator("properties")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(value, default=str).encode())
        if size > MAX_PROPERTIES_BYTES:
            raise ValueError(
                f"properties take {size} bytes as JSON; at most {MAX_PROPERTIES_BYTES}"
            )
        return value

    @model_validator(mode="after")
    def _one_owner(self) -> EventIn:
        if (self.profile_id is None) == (self.app_user_id is None):
            raise ValueError("give exactly one of profile_id and app_user_id")
        if self.app is not None and self.app_user_id is None:
            raise ValueError("app goes with app_user_id")
        return self


class EventAccepted(BaseModel):
    event_id: str
    duplicate: bool
    forwarded: bool = Field(
        description="whether the journeys have been told yet: false for a new event (the "
        "forwarder beside the workers tells them shortly; see GET /v1/events/{event_id})"
    )
    started: list[str] = Field(
        description="journeys this request started: always empty, as journeys are started "
        "by the forwarder after the answer (see `outcome` of GET /v1/events/{event_id})"
    )
    signalled: int = Field(description="running journeys this request signalled: always 0")


def _unknown_profile(profile_id: str) -> ApiError:
    return ApiError(404, "unknown_profile", f"no profile {profile_id!r}")


def _reused(body: EventIn, profile_id: str, row: CustomEvent, caller: Caller) -> ApiError:
    """The 409 of an event id stored for another event; it names that event only to the admin
    or for the caller's own profile (another app's profile is none of its business)."""
    message = f"event id {body.event_id!r} was stored for another event"
    if caller.is_admin or row.profile_id == profile_id:
        message += f" ({row.name!r} of profile {row.profile_id!r})"
    return ApiError(409, "conflict", message)


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def post_event(body: EventIn, state: State, caller: CallerOf) -> EventAccepted:
    """Stored (and committed) before the answer; the forwarder beside the workers then tells
    the journeys. An app's key may post only for profiles its app knows (a device or a user
    mapping of the app)."""
    now = utcnow()
    async with state.db.write() as session:
        if body.app_user_id is not None:
            profile_id = await _mapped_profile(session, body, caller)
        else:
            assert body.profile_id is not None
            profile_id = body.profile_id
            # the id alone: loading the profile (its attributes) is the forwarder's business
            known = await session.exec(select(col(Profile.id)).where(col(Profile.id) == profile_id))
            if known.first() is None:
                raise _unknown_profile(profile_id)
            # 404, not 403: a 403 would tell the key the profile exists in another app
            if caller.app_id is not None and not await known_to_app(
                session, caller.app_id, profile_id
            ):
                raise _unknown_profile(profile_id)
        row, created = await store_event(
            session,
            EventReport(
                event_id=body.event_id,
                profile_id=profile_id,
                name=body.name,
                properties=body.properties,
                occurred_at=body.occurred_at or now,
                app_id=caller.app_id,
                traceparent=current_traceparent(),
            ),
            now,
        )
    if not created and (row.profile_id, row.name) != (profile_id, body.name):
        raise _reused(body, profile_id, row, caller)
    return EventAccepted(
        event_id=row.event_id,
        duplicate=not created,
        forwarded=row.forwarded_at is not None,
        started=[],
        signalled=0,
    )


async def _mapped_profile(session: AsyncSession, body: EventIn, caller: Caller) -> str:
    """The profile the app user is mapped to; 404 unknown_app_user when there is none (an
    event never creates a profile: nothing could reach someone tidings does not know)."""
    app = body.app or caller.app_id
    if app is None:
        message = "app is required with app_user_id (the admin key belongs to no app)"
        raise ApiError(422, "invalid_request", message, [{"loc": ["body", "app"], "msg": message}])
    if caller.app_id is not None and app != caller.app_id:
        raise ApiError(403, "forbidden", "an app's key posts events for its own app's users")
    assert body.app_user_id is not None
    mapping = await find_mapping(session, app, body.app_user_id)
    if mapping is None:
        raise ApiError(
            404,
            "unknown_app_user",
            f"app {app!r} has no user {body.app_user_id!r} mapped",
            [{"loc": ["body", "app_user_id"], "msg": "no such user mapped"}],
        )
    return mapping.profile_id


class EventOutcome(BaseModel):
    started: list[str] = Field(description="journeys the event started for the profile")
    signalled: list[str] = Field(description="running journeys' workflows that received it")
    skipped: dict[str, str] = Field(
        description="journey -> why the profile did not enter it (its re-entry policy)"
    )


class EventPublic(BaseModel):
    event_id: str
    profile_id: str
    name: str
    app_id: str | None = Field(description="the app whose key posted it; null: the admin")
    occurred_at: datetime
    received_at: datetime
    forwarding: ForwardState = Field(
        description="pending (waiting for the forwarder, perhaps until next_attempt_at); "
        "forwarded; failed (Temporal kept refusing it: set aside, see forward_note)"
    )
    forwarded_at: datetime | None
    forward_attempts: int
    next_attempt_at: datetime | None = Field(
        description="a refused event waits until then before it is tried again"
    )
    forward_failed_at: datetime | None = Field(description="when forwarding was given up")
    forward_note: str | None = Field(description="why the last forward failed, or a note")
    outcome: EventOutcome | None = Field(description="what forwarding did, once forwarded")

    @classmethod
    def of(cls, row: CustomEvent) -> EventPublic:
        return cls(
            event_id=row.event_id,
            profile_id=row.profile_id,
            name=row.name,
            app_id=row.app_id,
            occurred_at=row.occurred_at,
            received_at=row.received_at,
            forwarding=forward_state(row),
            forwarded_at=row.forwarded_at,
            forward_attempts=row.forward_attempts,
            next_attempt_at=row.next_attempt_at,
            forward_failed_at=row.forward_failed_at,
            forward_note=row.last_error,
            outcome=EventOutcome.model_validate(row.outcome) if row.outcome else None,
        )


@router.get("")
async def list_all(
    session: ReadSession,
    caller: CallerOf,
    forwarding: Annotated[
        ForwardState | None,
        Query(description="only this forwarding state, e.g. failed: what needs a look"),
    ] = None,
    profile_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[EventPublic]:
    """Stored custom events, oldest first: an app's key sees those it posted."""
    page = await list_events(
        session,
        app_id=caller.app_id,
        forwarding=forwarding,
        profile_id=profile_id,
        after=decode_cursor(cursor, int),
        limit=limit,
    )
    return Page(
        items=[EventPublic.of(row) for row in page.items],
        next_cursor=encode_cursor(page.next_after),
    )


class RequeueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_ids: list[Annotated[str, Field(min_length=1, max_length=120)]] | None = Field(
        default=None,
        max_length=1000,
        description="only these; default: every event the forwarder set aside",
    )


class Requeued(BaseModel):
    requeued: int = Field(description="events given back to the forwarder")


@router.post("/requeue")
async def requeue(body: RequeueIn, session: WriteSession, caller: CallerOf) -> Requeued:
    """Give events the forwarder set aside (`?forwarding=failed`) another round of attempts,
    once what Temporal refused them for is fixed. An app's key requeues only those it
    posted."""
    count = await requeue_failed(session, app_id=caller.app_id, event_ids=body.event_ids)
    return Requeued(requeued=count)


@router.get(
    "/{event_id}",
    responses={
        404: {
            "model": ErrorResponse,
            "description": "No such event (for an app's key: none that key's app posted)",
        }
    },
)
async def get_event(event_id: str, session: ReadSession, caller: CallerOf) -> EventPublic:
    """One stored event and what forwarding did with it. An app's key reads only the events
    it posted (any other answers 404, as an unknown id)."""
    row = (
        await session.exec(select(CustomEvent).where(col(CustomEvent.event_id) == event_id))
    ).first()
    if row is None or (caller.app_id is not None and row.app_id != caller.app_id):
        raise ApiError(404, "not_found", f"no event {event_id!r}")
    return EventPublic.of(row)
