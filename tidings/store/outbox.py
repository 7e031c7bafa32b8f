"""The outbox shape shared by stored interactions and custom events (DESIGN.md decision 6),
and by the events bound for webhook endpoints: each row is forwarded once its destination
takes it (Temporal, or the endpoint), backs off on its own when refused, and is set aside
after the limit, kept with its reason until ops requeue it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, or_, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.models import CustomEvent, Interaction, WebhookDelivery

# SQLite's bound-parameter budget, with room to spare
IN_CHUNK = 900

Outboxed = type[Interaction] | type[CustomEvent] | type[WebhookDelivery]


class ForwardState(StrEnum):
    """Where a stored outside event stands with its journeys."""

    PENDING = "pending"  # waiting for the forwarder (perhaps backing off: next_attempt_at)
    FORWARDED = "forwarded"  # its journeys were told (or no longer run: see the note)
    FAILED = "failed"  # Temporal kept refusing it: set aside, kept for inspection
    NEVER = "never"  # an unmatched interaction: no journey to tell


def due(table: Outboxed, now: datetime) -> ColumnElement[bool]:
    """Not backing off: never refused, or its wait is over."""
    return or_(col(table.next_attempt_at).is_(None), col(table.next_attempt_at) <= now)


def chunks(ids: Sequence[int]) -> list[list[int]]:
    return [list(ids[start : start + IN_CHUNK]) for start in range(0, len(ids), IN_CHUNK)]


async def after_attempt(
    session: AsyncSession,
    table: Outboxed,
    ids: Sequence[int],
    *,
    unforwarded_only: bool = True,
    **values: Any,
) -> None:
    """Record one forwarding attempt on these rows (by chunks of ids), with ``values``."""
    for chunk in chunks(ids):
        statement = update(table).where(col(table.id).in_(chunk))
        if unforwarded_only:
            statement = statement.where(col(table.forwarded_at).is_(None))
        await session.exec(
            statement.values(forward_attempts=col(table.forward_attempts) + 1, **values)
        )


async def mark_forwarded(
    session: AsyncSession,
    table: Outboxed,
    ids: Sequence[int],
    now: datetime,
    note: str | None = None,
    **values: Any,
) -> None:
    """Done with these rows: delivered, or (with a note) not deliverable at all, such as
    events for a workflow that has completed."""
    await after_attempt(
        session, table, ids, forwarded_at=now, next_attempt_at=None, last_error=note, **values
    )


async def note_forward_failure(
    session: AsyncSession, table: Outboxed, ids: Sequence[int], error: str
) -> None:
    """A failed attempt while Temporal is unreachable: the rows stay due, with why (the
    forwarder backs off as a whole; an outage is no fault of the rows)."""
    await after_attempt(session, table, ids, unforwarded_only=False, last_error=error[:2000])


async def defer_forwarding(
    session: AsyncSession, table: Outboxed, ids: Sequence[int], error: str, retry_at: datetime
) -> None:
    """Temporal refused these rows themselves: count it, and leave them until ``retry_at``,
    so they neither spin nor hold back the rows behind them."""
    await after_attempt(
        session,
        table,
        ids,
        forward_failures=col(table.forward_failures) + 1,
        next_attempt_at=retry_at,
        last_error=error[:2000],
    )


async def give_up_forwarding(
    session: AsyncSession, table: Outboxed, ids: Sequence[int], error: str, now: datetime
) -> None:
    """Refused once too often: no more attempts; the row keeps its reason for inspection
    (``?forwarding=failed``) until it is requeued."""
    await after_attempt(
        session,
        table,
        ids,
        forward_failures=col(table.forward_failures) + 1,
        next_attempt_at=None,
        forward_failed_at=now,
        last_error=f"gave up: {error}"[:2000],
    )


REQUEUED: dict[str, Any] = {
    "forward_failures": 0,
    "next_attempt_at": None,
    "forward_failed_at": None,
    "last_error": None,
}
