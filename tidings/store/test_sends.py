"""Test sends in the store: recorded by whoever asks, completed by the worker that sends."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.models import TestSend, TestSendStatus
from tidings.store.types import utcnow

# a device's outcome while its push is not yet sent
OPEN = "pending"


def open_devices(row: TestSend) -> list[dict[str, Any]]:
    return [d for d in row.devices if d.get("status") == OPEN]


async def complete(
    session: AsyncSession,
    test_send_id: str,
    outcomes: dict[int, tuple[str, str | None, str | None]],
    *,
    error: str | None = None,
    now: datetime | None = None,
) -> TestSend | None:
    """Write each device's outcome (device id -> status, reason, provider message id);
    the test send is done once no device is left open (failed, with ``error``, when the
    send as a whole could not run)."""
    row = await session.get(TestSend, test_send_id, with_for_update=True)
    if row is None:
        return None
    devices = []
    for entry in row.devices:
        outcome = outcomes.get(int(entry["device_id"]))
        if outcome is not None and entry.get("status") == OPEN:
            status, reason, message_id = outcome
            entry = entry | {"status": status, "reason": reason, "message_id": message_id}
        devices.append(entry)
    # a new list, so the JSON column is seen as changed
    row.devices = devices
    if error is not None:
        row.error = error
    if not open_devices(row):
        row.status = TestSendStatus.FAILED if error is not None else TestSendStatus.DONE
        row.completed_at = now or utcnow()
    session.add(row)
    await session.flush()
    return row


async def list_test_sends(
    session: AsyncSession,
    *,
    journey_id: str | None,
    limit: int,
    before: tuple[datetime, str] | None,
) -> list[TestSend]:
    """Newest first, by (created_at, id); ``before`` is the last row of the previous page."""
    query = select(TestSend)
    if journey_id is not None:
        query = query.where(col(TestSend.journey_id) == journey_id)
    if before is not None:
        at, row_id = before
        query = query.where(
            (col(TestSend.created_at) < at)
            | ((col(TestSend.created_at) == at) & (col(TestSend.id) < row_id))
        )
    query = query.order_by(col(TestSend.created_at).desc(), col(TestSend.id).desc()).limit(limit)
    return list((await session.exec(query)).all())
