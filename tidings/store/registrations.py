"""Tracked registrations of the compatible surface: what the status call answers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.models import RegistrationFailure, RegistrationRequest, RegistrationStatus


async def record_outcome(
    session: AsyncSession,
    *,
    request_id: str,
    app_id: str,
    status: RegistrationStatus,
    reason: RegistrationFailure | None,
    now: datetime,
) -> None:
    session.add(
        RegistrationRequest(
            id=request_id, app_id=app_id, status=status, failure_reason=reason, created_at=now
        )
    )
    await session.flush()


async def outcomes(
    session: AsyncSession, app_id: str, request_ids: Sequence[str]
) -> dict[str, RegistrationRequest]:
    """The app's tracked requests among these ids; another app's are not its to see."""
    if not request_ids:
        return {}
    rows = await session.exec(
        select(RegistrationRequest)
        .where(col(RegistrationRequest.app_id) == app_id)
        .where(col(RegistrationRequest.id).in_(list(request_ids)))
    )
    return {row.id: row for row in rows.all()}
