"""Erasures: the anonymous record of erased profiles (counts and a time, nothing else)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from tidings.api.deps import Admin, ReadSession
from tidings.api.errors import ERROR_RESPONSES
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.store.erasure import list_erasures
from tidings.store.models import Erasure

router = APIRouter(
    prefix="/v1/erasures", tags=["profiles"], dependencies=[Admin], responses=ERROR_RESPONSES
)


class ErasurePublic(BaseModel):
    id: int
    erased_at: datetime
    devices: int = Field(description="devices deleted")
    mappings: int = Field(description="user mappings deleted")
    deliveries: int = Field(description="ledger rows kept under an opaque profile id")
    interactions: int = Field(description="interactions kept under an opaque profile id")
    other_records: int = Field(
        description="other rows (run memberships, journey events...) kept under the opaque id"
    )

    @classmethod
    def of(cls, erasure: Erasure) -> ErasurePublic:
        return cls.model_validate(erasure, from_attributes=True)


@router.get("")
async def list_all(
    session: ReadSession, limit: Limit = 50, cursor: Cursor = None
) -> Page[ErasurePublic]:
    """Erasures, oldest first."""
    page = await list_erasures(session, after=decode_cursor(cursor, int), limit=limit)
    return Page(
        items=[ErasurePublic.of(e) for e in page.items],
        next_cursor=encode_cursor(page.next_after),
    )
