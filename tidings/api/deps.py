"""Dependencies shared by the routers: the store, the secret box, authentication."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.api.errors import ApiError
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.secrets import SecretBox


@dataclass
class ApiState:
    settings: Settings
    db: Database
    secrets: SecretBox
    admin_key: str


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.tidings
    return state


State = Annotated[ApiState, Depends(api_state)]


async def write_session(state: State) -> AsyncIterator[AsyncSession]:
    """A session committed before the response is sent: what the API acknowledges is stored."""
    async with state.db.write() as session:
        yield session


async def read_session(state: State) -> AsyncIterator[AsyncSession]:
    async with state.db.read() as session:
        yield session


WriteSession = Annotated[AsyncSession, Depends(write_session)]
ReadSession = Annotated[AsyncSession, Depends(read_session)]

bearer = HTTPBearer(auto_error=False, description="Admin key: `Authorization: Bearer <key>`")


async def require_admin(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    if credentials is None:
        raise ApiError(
            401,
            "unauthorized",
            "send the API key as `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), state.admin_key.encode()):
        raise ApiError(
            401, "unauthorized", "unknown API key", headers={"WWW-Authenticate": "Bearer"}
        )


Admin = Depends(require_admin)
