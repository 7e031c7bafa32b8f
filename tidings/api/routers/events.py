"""Custom events (``POST /v1/events``): a profile did something the journeys care about.

The event is stored (idempotent on its id) and committed before the answer, then forwarded:
it starts the journeys whose trigger it is (one cohort per profile, by signal-with-start)
and reaches the running journeys that wait for it (goal, wait_for). If Temporal cannot be
reached the answer is still 202: the event is kept, and a sweep in this process forwards it
once Temporal answers.

An app's key may post events only for the profiles its app knows (one of its devices or user
mappings names the profile); the admin key for any profile. Any other profile answers the
same 404 as a profile that does not exist, so a key never learns which profiles other apps
hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlmodel import col, select
from temporalio.client import Client

from tidings.api.deps import Caller, CallerOf, State
from tidings.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from tidings.inbound.triggers import EventForwarder
from tidings.journeys.predicates import EventName
from tidings.settings import Settings
from tidings.store.custom_events import EventReport, store_event
from tidings.store.models import CustomEvent, Profile
from tidings.store.profiles import known_to_app
from tidings.store.types import utcnow
from tidings.temporal.client import configured_address, connect
from tidings.temporal.devserver import DevServer, start_dev_server

log = logging.getLogger(__name__)

MAX_PROPERTIES_BYTES = 16_384
SWEEP_EVERY_S = 2.0


class TemporalLink:
    """The API's Temporal client, connected on first use, so the API starts (and stores
    events) while Temporal is down. Without a configured server it joins the embedded dev
    server (starting one if no other tidings command has)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Client | None = None
        self._server: DevServer | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        async with self._lock:
            if self._client is None:
                address = configured_address()
                if address is None:
                    self._server = await asyncio.to_thread(start_dev_server, self._settings.home)
                    address = self._server.address
                self._client = await connect(address)
            return self._client

    async def close(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)


@contextlib.asynccontextmanager
async def forwarding(app: FastAPI) -> AsyncIterator[None]:
    """The forwarder and its sweep live as long as the app (inside the app's own lifespan,
    which set up the store)."""
    state = app.state.tidings
    link = TemporalLink(state.settings)
    forwarder = EventForwarder(state.db, state.settings, link.client)
    app.state.tidings_events = forwarder
    sweeper = asyncio.create_task(_sweep(forwarder))
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await link.close()


async def _sweep(forwarder: EventForwarder) -> None:
    while True:
        await asyncio.sleep(SWEEP_EVERY_S)
        try:
            await forwarder.sweep()
        except Exception as error:  # the sweep must outlive a bad moment
            log.warning("custom event sweep failed: %s", error)


router = APIRouter(
    prefix="/v1/events",
    tags=["events"],
    lifespan=forwarding,
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

    profile_id: Annotated[str, Field(min_length=1, max_length=128)]
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


class EventAccepted(BaseModel):
    event_id: str
    duplicate: bool
    forwarded: bool = Field(description="false: stored, forwarded later (Temporal unreachable)")
    started: list[str] = Field(description="journeys the event started for the profile")
    signalled: int = Field(description="running journeys that received the event")


def _unknown_profile(profile_id: str) -> ApiError:
    return ApiError(404, "unknown_profile", f"no profile {profile_id!r}")


def _reused(body: EventIn, row: CustomEvent, caller: Caller) -> ApiError:
    """The 409 of an event id stored for another event; it names that event only to the admin
    or for the caller's own profile (another app's profile is none of its business)."""
    message = f"event id {body.event_id!r} was stored for another event"
    if caller.is_admin or row.profile_id == body.profile_id:
        message += f" ({row.name!r} of profile {row.profile_id!r})"
    return ApiError(409, "conflict", message)


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def post_event(
    body: EventIn, state: State, request: Request, caller: CallerOf
) -> EventAccepted:
    """Stored (and committed) before the answer, then forwarded to the journeys. An app's
    key may post only for profiles its app knows (a device or a user mapping of the app)."""
    now = utcnow()
    async with state.db.write() as session:
        # the id alone: loading the profile (its attributes) is the forwarder's business
        known = await session.exec(
            select(col(Profile.id)).where(col(Profile.id) == body.profile_id)
        )
        if known.first() is None:
            raise _unknown_profile(body.profile_id)
        # 404, not 403: a 403 would tell the key the profile exists in another app
        if caller.app_id is not None and not await known_to_app(
            session, caller.app_id, body.profile_id
        ):
            raise _unknown_profile(body.profile_id)
        row, created = await store_event(
            session,
            EventReport(
                event_id=body.event_id,
                profile_id=body.profile_id,
                name=body.name,
                properties=body.properties,
                occurred_at=body.occurred_at or now,
            ),
            now,
        )
    if not created and (row.profile_id, row.name) != (body.profile_id, body.name):
        raise _reused(body, row, caller)
    if row.forwarded_at is not None:
        return EventAccepted(
            event_id=row.event_id, duplicate=True, forwarded=True, started=[], signalled=0
        )
    forwarder: EventForwarder = request.app.state.tidings_events
    try:
        done = await forwarder.forward(row)
    except Exception as error:  # stored: the sweep forwards it later
        log.warning("custom event %s stored, not forwarded yet: %s", row.event_id, error)
        return EventAccepted(
            event_id=row.event_id, duplicate=not created, forwarded=False, started=[], signalled=0
        )
    return EventAccepted(
        event_id=row.event_id,
        duplicate=not created,
        forwarded=True,
        started=done.started,
        signalled=len(done.signalled),
    )
