"""Interaction reports (delivered, opened, clicked, dismissed), by tracking id."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from tidings.api.deps import Admin, WriteSession
from tidings.api.errors import ERROR_RESPONSES, ApiError, ErrorResponse
from tidings.push.masking import mask_token
from tidings.store.interactions import InteractionReport, record_interaction
from tidings.store.models import InteractionKind, InteractionStatus
from tidings.store.types import utcnow

router = APIRouter(
    prefix="/v1/interactions",
    tags=["interactions"],
    dependencies=[Admin],
    responses={
        **ERROR_RESPONSES,
        404: {"model": ErrorResponse, "description": "Unknown tracking id (kept for inspection)"},
    },
)


class InteractionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_id: Annotated[str, Field(min_length=1, max_length=64)]
    kind: InteractionKind
    event_id: str | None = Field(
        default=None,
        max_length=128,
        description="idempotency key; default: tracking id + kind + action id",
    )
    action_id: str | None = Field(default=None, max_length=128)
    occurred_at: datetime | None = None
    device_token: str | None = Field(default=None, max_length=4096)


class InteractionAccepted(BaseModel):
    event_id: str
    status: InteractionStatus
    duplicate: bool


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def report(body: InteractionIn, session: WriteSession) -> InteractionAccepted:
    """Stored (and committed) before the answer; forwarded to the journey afterwards."""
    now = utcnow()
    event_id = body.event_id or f"{body.tracking_id}:{body.kind.value}:{body.action_id or ''}"
    row, created = await record_interaction(
        session,
        InteractionReport(
            event_id=event_id,
            tracking_id=body.tracking_id,
            kind=body.kind,
            action_id=body.action_id,
            occurred_at=body.occurred_at or now,
            source="api",
            device_token_hint=mask_token(body.device_token) if body.device_token else None,
        ),
        now,
    )
    await session.commit()
    if InteractionStatus(row.status) is InteractionStatus.UNMATCHED:
        raise ApiError(
            404,
            "unknown_tracking_id",
            f"no push has tracking id {body.tracking_id!r}; the report was kept for "
            f"inspection as event {event_id!r}",
        )
    return InteractionAccepted(
        event_id=event_id, status=InteractionStatus(row.status), duplicate=not created
    )
