"""Dependencies shared by the routers: the store, the secret box, authentication.

Two kinds of bearer key reach the API. The admin key (settings, or ``<home>/admin.key``)
manages apps, API keys, profiles and journeys, and may do anything an app may. An app's API
key (``tdk_<id>_<secret>``) may touch only that app's devices, user mappings and
interactions: any other app's resources answer 403 and nothing changes.

The native API's key is checked from the headers before any of the body is read (the request
gate, tidings.api.gate); failed authentications are limited per client address
(tidings.api.throttle), and a valid key is served whatever its address' count.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from tidings.api.errors import ApiError
from tidings.api.throttle import FailedAuthentications, source_of
from tidings.inbound.recorder import InteractionRecorder
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.keys import verify_key
from tidings.store.secrets import SecretBox

APP_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
AppId = Annotated[str, Path(pattern=APP_ID_PATTERN, description="the app's slug")]


@dataclass
class ApiState:
    settings: Settings
    db: Database
    secrets: SecretBox
    admin_key: str
    # SQLite takes one writer at a time. Writers of this process queue here, in order,
    # instead of in SQLite's busy handler, whose growing sleeps collapse throughput once a few
    # dozen requests contend (measured: from hundreds of writes per second to about 15).
    sqlite_writer: asyncio.Lock = field(default_factory=asyncio.Lock)
    # set by the app's lifespan (tidings.inbound.recorder)
    interactions: InteractionRecorder | None = None
    # failed authentications per client address, in this process (tidings.api.throttle)
    failed_authentications: FailedAuthentications = field(default_factory=FailedAuthentications)
    # compat interaction reports naming no push this process refused (counted, never stored:
    # that endpoint takes no key), and when that count was last logged
    unmatched_compat_reports: int = 0
    unmatched_compat_logged_at: float | None = None

    # Temporal, for what moves runs (start, cancel, progress): connected on first use, so the
    # API serves everything else with Temporal down (interactions go through the outbox)
    temporal: Client | None = None
    temporal_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def recorder(self) -> InteractionRecorder:
        assert self.interactions is not None, "the API's lifespan has not started"
        return self.interactions


# Dependencies are coroutines even where they never await: FastAPI runs a plain function's
# dependency in its thread pool, a thread hop on every request.
async def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.tidings
    return state


State = Annotated[ApiState, Depends(api_state)]


async def write_session(state: State) -> AsyncIterator[AsyncSession]:
    """A session committed before the response is sent: what the API acknowledges is stored."""
    async with contextlib.AsyncExitStack() as stack:
        if state.db.is_sqlite:
            await stack.enter_async_context(state.sqlite_writer)
        session = await stack.enter_async_context(state.db.write())
        yield session


async def read_session(state: State) -> AsyncIterator[AsyncSession]:
    async with state.db.read() as session:
        yield session


# a Temporal that does not answer within this is treated as down (503, or not ready)
CONNECT_TIMEOUT_S = 5.0


async def temporal_client(state: State) -> Client:
    """The API's Temporal client: the configured server (TEMPORAL_ADDRESS...), or the
    embedded dev server another tidings process started; 503 when neither answers."""
    async with state.temporal_lock:
        if state.temporal is None:
            from tidings.temporal.client import configured_address, connect
            from tidings.temporal.devserver import find_dev_server

            address = configured_address()
            if address is None:
                server = find_dev_server(state.settings.home)
                address = server.address if server is not None else None
            if address is None:
                raise ApiError(
                    503,
                    "temporal_unavailable",
                    "no Temporal server to move runs: set TEMPORAL_ADDRESS, or start the "
                    "embedded stack (`tidings up`)",
                )
            try:
                state.temporal = await asyncio.wait_for(connect(address), CONNECT_TIMEOUT_S)
            except (RuntimeError, TimeoutError) as error:
                raise ApiError(
                    503, "temporal_unavailable", f"Temporal at {address} does not answer: {error}"
                ) from None
        return state.temporal


Temporal = Annotated[Client, Depends(temporal_client)]
WriteSession = Annotated[AsyncSession, Depends(write_session)]
ReadSession = Annotated[AsyncSession, Depends(read_session)]

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="`Authorization: Bearer <key>`: the admin key, or one of an app's API keys "
    "(which may touch only that app's devices, user mappings and interactions).",
)


@dataclass(frozen=True)
class Caller:
    """Who is calling: the admin (``app_id`` None), or one app through one of its keys."""

    app_id: str | None = None
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.app_id is None

    def may_touch(self, app_id: str | None) -> bool:
        return self.is_admin or self.app_id == app_id


# where the request gate (tidings.api.gate) leaves the caller it authenticated from the headers
CALLER_SCOPE_KEY = "tidings.caller"
MISSING_KEY = "send the API key as `Authorization: Bearer <key>`"
UNKNOWN_KEY = "unknown or revoked API key"


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def rate_limited(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"too many failed authentications from this address: retry in {retry_after} s "
        "(a valid key is still served)",
        headers={"Retry-After": str(retry_after)},
    )


async def caller_for(state: ApiState, key: str) -> Caller | None:
    """Who this bearer key is (the admin, or an app through one of its live keys), or None."""
    if hmac.compare_digest(key.encode(), state.admin_key.encode()):
        return Caller()
    async with state.db.read() as session:
        row = await verify_key(session, key)
    if row is None:
        return None
    return Caller(app_id=row.app_id, key_id=row.id)


def refused(state: ApiState, source: str, message: str) -> ApiError:
    """The answer to a failed authentication: 401, or 429 once ``source`` failed too often."""
    retry_after = state.failed_authentications.fail(source)
    return unauthorized(message) if retry_after is None else rate_limited(retry_after)


async def source(request: Request) -> str:
    """The client address failed authentications are counted against."""
    return source_of(request.scope)


Source = Annotated[str, Depends(source)]


async def authenticate(
    request: Request,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller the request gate (tidings.api.gate) authenticated from the headers before
    the body was read; checked here only for a keyed route outside the gate's paths."""
    gated = request.scope.get(CALLER_SCOPE_KEY)
    if isinstance(gated, Caller):
        return gated
    where = source_of(request.scope)
    if credentials is None:
        raise refused(state, where, MISSING_KEY)
    caller = await caller_for(state, credentials.credentials)
    if caller is None:
        raise refused(state, where, UNKNOWN_KEY)
    return caller


CallerOf = Annotated[Caller, Depends(authenticate)]


async def require_admin(caller: CallerOf) -> None:
    if not caller.is_admin:
        raise ApiError(
            403,
            "forbidden",
            "this needs the admin key: an app's API key may touch only that app's devices, "
            "user mappings and interactions",
        )


async def require_app_access(app_id: AppId, caller: CallerOf) -> None:
    """The admin, or a key of the app named in the path."""
    if not caller.may_touch(app_id):
        raise ApiError(403, "forbidden", f"this API key belongs to another app than {app_id!r}")


Admin = Depends(require_admin)
AppAccess = Depends(require_app_access)
