"""An app's API keys: several per app, shown once at creation, revocable."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field

from tidings.api.deps import Admin, AppId, ReadSession, WriteSession
from tidings.api.errors import ERROR_RESPONSES, ApiError
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.api.routers.apps import app_or_404
from tidings.api.types import LABEL
from tidings.store.keys import create_key, list_keys, revoke_key
from tidings.store.models import ApiKey
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="the key's id")]

router = APIRouter(
    prefix="/v1/apps/{app_id}/keys",
    tags=["api keys"],
    dependencies=[Admin],
    responses=ERROR_RESPONSES,
)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=200, pattern=LABEL, description="what the key is for"
    )


class KeyPublic(BaseModel):
    id: str
    app_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyPublic:
        return cls.model_validate(key, from_attributes=True)


class KeyCreated(KeyPublic):
    key: str = Field(
        description="the key itself, shown this once: only a digest of it is stored; send it "
        "as `Authorization: Bearer <key>`"
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(app_id: AppId, body: KeyCreate, session: WriteSession) -> KeyCreated:
    await app_or_404(session, app_id)
    row, key = await create_key(session, app_id=app_id, name=body.name, now=utcnow())
    created = KeyCreated(**KeyPublic.of(row).model_dump(), key=key)
    await session.commit()
    log.info("app %s: API key %s created", app_id, row.id)
    return created


@router.get("")
async def list_all(
    app_id: AppId, session: ReadSession, limit: Limit = 50, cursor: Cursor = None
) -> Page[KeyPublic]:
    """The app's keys (revoked ones included), in id order; never the keys themselves."""
    await app_or_404(session, app_id)
    page = await list_keys(session, app_id, after=decode_cursor(cursor, str), limit=limit)
    return Page(
        items=[KeyPublic.of(key) for key in page.items],
        next_cursor=encode_cursor(page.next_after),
    )


@router.delete("/{key_id}")
async def revoke(app_id: AppId, key_id: KeyId, session: WriteSession) -> KeyPublic:
    """Revoke the key: it stops working at once (idempotent)."""
    row = await revoke_key(session, app_id=app_id, key_id=key_id, now=utcnow())
    if row is None:
        raise ApiError(404, "key_not_found", f"app {app_id!r} has no API key {key_id!r}")
    public = KeyPublic.of(row)
    await session.commit()
    log.info("app %s: API key %s revoked", app_id, key_id)
    return public
