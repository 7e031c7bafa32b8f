"""Custom events in the store: idempotent on the event id, and the outbox the forwarder
beside the workers drains (DESIGN.md decision 6), as it drains the interactions'."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store import outbox
from tidings.store.dialect import insert_for
from tidings.store.models import CustomEvent
from tidings.store.outbox import ForwardState
from tidings.store.pages import Page, keyset
from tidings.store.types import utcnow


@dataclass(frozen=True)
class EventReport:
    event_id: str
    profile_id: str
    name: str
    properties: dict[str, Any]
    occurred_at: datetime
    app_id: str | None = None  # the app whose key posted it; None: the admin
    traceparent: str | None = None  # the posting request's trace, when tracing is on


async def store_event(
    session: AsyncSession, report: EventReport, now: datetime
) -> tuple[CustomEvent, bool]:
    """Store the event (or find the one stored under its id); return it and whether this
    call stored it."""
    values: dict[str, Any] = {
        "event_id": report.event_id,
        "profile_id": report.profile_id,
        "name": report.name,
        "properties": report.properties,
        "occurred_at": report.occurred_at,
        "received_at": now,
        "app_id": report.app_id,
        "traceparent": report.traceparent,
        "forward_attempts": 0,
        "forward_failures": 0,
    }
    result = await session.exec(
        insert_for(session, CustomEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(col(CustomEvent.id))
    )
    # RETURNING, not rowcount: psycopg reports -1 rows for INSERT ... ON CONFLICT DO NOTHING
    inserted = result.first()
    if inserted is not None:
        return CustomEvent(id=inserted[0], **values), True
    return await event_by_id(session, report.event_id), False


async def event_by_id(session: AsyncSession, event_id: str) -> CustomEvent:
    return (
        await session.exec(select(CustomEvent).where(col(CustomEvent.event_id) == event_id))
    ).one()


def forward_state(row: CustomEvent) -> ForwardState:
    if row.forwarded_at is not None:
        return ForwardState.FORWARDED
    if row.forward_failed_at is not None:
        return ForwardState.FAILED
    return ForwardState.PENDING


def in_forward_state(state: ForwardState) -> ColumnElement[bool]:
    if state is ForwardState.NEVER:  # every event has its journeys to ask
        return false()
    if state is ForwardState.FORWARDED:
        return col(CustomEvent.forwarded_at).is_not(None)
    if state is ForwardState.FAILED:
        return col(CustomEvent.forward_failed_at).is_not(None)
    return and_(
        col(CustomEvent.forwarded_at).is_(None), col(CustomEvent.forward_failed_at).is_(None)
    )


async def list_events(
    session: AsyncSession,
    *,
    app_id: str | None,
    after: int | None,
    limit: int,
    forwarding: ForwardState | None = None,
    profile_id: str | None = None,
) -> Page[CustomEvent]:
    """Stored events in the order they arrived; ``app_id``: only those that app's key
    posted."""
    statement = select(CustomEvent)
    if app_id is not None:
        statement = statement.where(col(CustomEvent.app_id) == app_id)
    if forwarding is not None:
        statement = statement.where(in_forward_state(forwarding))
    if profile_id is not None:
        statement = statement.where(col(CustomEvent.profile_id) == profile_id)
    return await keyset(session, statement, col(CustomEvent.id), after, limit)


# --- the outbox --------------------------------------------------------------------------


async def unforwarded(
    session: AsyncSession, limit: int, *, lock: bool, now: datetime | None = None
) -> list[CustomEvent]:
    """The oldest events due for forwarding: not forwarded, not set aside, not backing off.
    With ``lock`` (PostgreSQL) the rows are locked ``FOR UPDATE SKIP LOCKED`` until the
    session ends, so forwarders running side by side take disjoint batches."""
    statement = (
        select(CustomEvent)
        .where(in_forward_state(ForwardState.PENDING))
        .where(outbox.due(CustomEvent, now or utcnow()))
        .order_by(col(CustomEvent.id))
        .limit(limit)
    )
    if lock:
        statement = statement.with_for_update(skip_locked=True)
    return list((await session.exec(statement)).all())


async def mark_forwarded(
    session: AsyncSession,
    outcomes: dict[int, dict[str, Any]],
    now: datetime,
    notes: dict[int, str] | None = None,
) -> None:
    """Done with these events (by row id), each with what forwarding did; rows of the same
    outcome and note are updated together."""
    groups: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for row_id, outcome in outcomes.items():
        note = (notes or {}).get(row_id)
        groups[(json.dumps(outcome, sort_keys=True), note)].append(row_id)
    for (outcome_json, note), ids in groups.items():
        await outbox.mark_forwarded(
            session, CustomEvent, ids, now, note, outcome=json.loads(outcome_json)
        )


async def note_forward_failure(session: AsyncSession, ids: Sequence[int], error: str) -> None:
    await outbox.note_forward_failure(session, CustomEvent, ids, error)


async def defer_forwarding(
    session: AsyncSession, ids: Sequence[int], error: str, retry_at: datetime
) -> None:
    await outbox.defer_forwarding(session, CustomEvent, ids, error, retry_at)


async def give_up_forwarding(
    session: AsyncSession, ids: Sequence[int], error: str, now: datetime
) -> None:
    """Refused once too often (``GET /v1/events?forwarding=failed``)."""
    await outbox.give_up_forwarding(session, CustomEvent, ids, error, now)


async def requeue_failed(
    session: AsyncSession, *, app_id: str | None, event_ids: Sequence[str] | None
) -> int:
    """Give events the forwarder set aside another round of attempts (after ops fixed what
    Temporal refused them for): only set-aside events, of those ``app_id``'s key posted
    unless None, and of ``event_ids`` when given. How many were requeued."""
    statement = (
        update(CustomEvent).where(in_forward_state(ForwardState.FAILED)).values(outbox.REQUEUED)
    )
    if app_id is not None:
        statement = statement.where(col(CustomEvent.app_id) == app_id)
    if event_ids is not None:
        statement = statement.where(col(CustomEvent.event_id).in_(list(event_ids)))
    result = await session.exec(statement)
    return int(result.rowcount)
