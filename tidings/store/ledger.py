"""Queries of the send ledger (see models/deliveries.py for why it exists)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVarTuple

from sqlalchemy import Result, Select, bindparam, update
from sqlalchemy import select as select_columns
from sqlmodel import SQLModel, col
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store import webhooks
from tidings.store.dialect import insert_for, one_of
from tidings.store.models import Delivery, DeliveryStatus, SendCause
from tidings.store.webhooks import Subscribers, WebhookEvent, WebhookEventType

Columns = TypeVarTuple("Columns")
TRACKING_NAMESPACE = uuid.UUID("5d1c3c1e-1f0b-4a8e-9a53-7f3d2b9c4e10")


def send_key(workflow_id: str, node_id: str, visit: int, device_id: int | None) -> str:
    return f"{workflow_id}:{node_id}:{visit}:{device_id if device_id is not None else '-'}"


def tracking_id_for(key: str) -> str:
    """Deterministic, so every attempt of a send carries the same tracking (collapse) id."""
    return str(uuid.uuid5(TRACKING_NAMESPACE, key))


@dataclass(frozen=True, slots=True)
class PlannedSend:
    """A ledger row about to be written."""

    send_key: str
    tracking_id: str
    profile_id: str
    device_id: int | None
    provider: str | None
    visit: int
    status: DeliveryStatus = DeliveryStatus.PENDING
    reason: str | None = None
    cause: SendCause | None = None


@dataclass(frozen=True, slots=True)
class LedgerRow:
    id: int
    send_key: str
    status: DeliveryStatus
    attempts: int
    # no attempt has closed it: it is sent (again) by the next attempt
    open: bool = True
    # what its last attempt learnt
    reason: str | None = None


def _insert_ignoring_duplicates(session: AsyncSession) -> Any:
    return insert_for(session, Delivery).on_conflict_do_nothing(index_elements=["send_key"])


async def open_sends(
    session: AsyncSession,
    *,
    run_id: str,
    workflow_id: str,
    journey_id: str,
    node_id: str,
    app_id: str,
    expires_at: datetime | None,
    planned: Sequence[PlannedSend],
    now: datetime,
) -> dict[str, LedgerRow]:
    """Write the rows that do not exist yet, then read back every planned row: a row written
    by an earlier attempt keeps its status, so completed sends are never repeated."""
    if not planned:
        return {}
    values = [
        {
            "send_key": item.send_key,
            "tracking_id": item.tracking_id,
            "run_id": run_id,
            "workflow_id": workflow_id,
            "journey_id": journey_id,
            "node_id": node_id,
            "visit": item.visit,
            "app_id": app_id,
            "profile_id": item.profile_id,
            "device_id": item.device_id,
            "provider": item.provider,
            "status": item.status.value,
            "reason": item.reason,
            "cause": item.cause.value if item.cause is not None else None,
            "attempts": 0,
            "unknown_outcomes": 0,
            "expires_at": expires_at,
            "created_at": now,
            "completed_at": None if item.status is DeliveryStatus.PENDING else now,
        }
        for item in planned
    ]
    closed = [item for item in planned if item.status is not DeliveryStatus.PENDING]
    found = await webhooks.subscribers(session) if closed else Subscribers()
    if found.wants([WebhookEventType.PUSH_FAILED]):
        # rows written closed (no device, a template error, a cap ...) are told as they are
        # written, once: RETURNING says which this statement wrote
        inserted = await session.exec(
            _insert_ignoring_duplicates(session).returning(col(Delivery.send_key)),
            params=values,
        )
        written = {key for (key,) in inserted.all()}
        events = [
            _closed_event(item, run_id, journey_id, node_id, app_id, now)
            for item in closed
            if item.send_key in written
        ]
        await webhooks.enqueue(session, events, now, found)
    else:
        await session.exec(_insert_ignoring_duplicates(session), params=values)
    keys = [item.send_key for item in planned]
    rows: dict[str, LedgerRow] = {}
    for chunk in _chunks(keys, 900):
        result = await _execute(
            session,
            select_columns(
                col(Delivery.id),
                col(Delivery.send_key),
                col(Delivery.status),
                col(Delivery.attempts),
                col(Delivery.completed_at),
                col(Delivery.reason),
            ).where(one_of(session, col(Delivery.send_key), chunk)),
        )
        for row_id, key, status, attempts, completed_at, reason in result.all():
            rows[key] = LedgerRow(
                int(row_id or 0),
                key,
                DeliveryStatus(status),
                attempts,
                completed_at is None,
                reason,
            )
    return rows


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """Where a ledger row stands, for a batch's summary."""

    status: DeliveryStatus
    reason: str | None
    provider: str | None
    cause: SendCause | None = None
    unknown_outcomes: int = 0


async def read_outcomes(session: AsyncSession, keys: Sequence[str]) -> dict[str, SendOutcome]:
    """The rows of these send keys as they stand now (every attempt's work included)."""
    outcomes: dict[str, SendOutcome] = {}
    for chunk in _chunks(list(keys), 900):
        result = await _execute(
            session,
            select_columns(
                col(Delivery.send_key),
                col(Delivery.status),
                col(Delivery.reason),
                col(Delivery.provider),
                col(Delivery.cause),
                col(Delivery.unknown_outcomes),
            ).where(one_of(session, col(Delivery.send_key), chunk)),
        )
        for key, status, reason, provider, cause, unknown in result.all():
            outcomes[key] = SendOutcome(
                DeliveryStatus(status),
                reason,
                provider,
                SendCause(cause) if cause else None,
                unknown,
            )
    return outcomes


async def count_attempt(session: AsyncSession, row_ids: Sequence[int]) -> None:
    """Mark an attempt on rows about to be sent (before the provider call)."""
    for chunk in _chunks(list(row_ids), 900):
        await session.exec(
            update(Delivery)
            .where(one_of(session, col(Delivery.id), chunk))
            .values(attempts=col(Delivery.attempts) + 1)
        )


# statuses that leave a row open (sent again by the next attempt) unless closed explicitly
RETRIED = frozenset({DeliveryStatus.PENDING, DeliveryStatus.UNKNOWN})


@dataclass(frozen=True, slots=True)
class Completion:
    """What an attempt learnt of one row. A ``pending`` or ``unknown`` completion keeps the
    row open for the next attempt unless ``close`` is set (its retries are over)."""

    row_id: int
    status: DeliveryStatus
    reason: str | None
    provider_message_id: str | None
    cause: SendCause | None = None
    # the request was sent and its answer lost
    answer_lost: bool = False
    close: bool = False

    @property
    def closes(self) -> bool:
        return self.close or self.status not in RETRIED


PUSH_OUTCOMES = (WebhookEventType.PUSH_SENT, WebhookEventType.PUSH_FAILED)


async def complete_sends(
    session: AsyncSession,
    completions: Iterable[Completion],
    now: datetime,
    found: Subscribers | None = None,
) -> None:
    """Record what attempts learnt. Only open rows change: a closed row (delivered, gone,
    given up) is never reopened or overwritten, whatever a late or repeated attempt says.
    Each row this closes is told to the webhook endpoints subscribed to its outcome, in the
    same transaction (``found``: the subscribers, when the caller has read them already)."""
    completions = list(completions)
    if not completions:
        return
    found = found if found is not None else await webhooks.subscribers(session)
    closing = [c for c in completions if c.closes]
    opened = (
        await _open_rows(session, [c.row_id for c in closing])
        if (closing and found.wants(PUSH_OUTCOMES))
        else {}
    )
    params = [
        {
            "b_id": item.row_id,
            "b_status": item.status.value,
            "b_reason": item.reason,
            "b_message_id": item.provider_message_id,
            "b_cause": item.cause.value if item.cause is not None else None,
            "b_lost": 1 if item.answer_lost else 0,
            "b_completed": now if item.closes else None,
        }
        for item in completions
    ]
    table = SQLModel.metadata.tables[Delivery.__tablename__]
    statement = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .where(table.c.completed_at.is_(None))
        .values(
            status=bindparam("b_status"),
            reason=bindparam("b_reason"),
            provider_message_id=bindparam("b_message_id"),
            cause=bindparam("b_cause"),
            unknown_outcomes=table.c.unknown_outcomes + bindparam("b_lost"),
            completed_at=bindparam("b_completed"),
        )
    )
    await session.exec(statement, params=params)
    if opened:
        events = [outcome_event(opened[c.row_id], c, now) for c in closing if c.row_id in opened]
        await webhooks.enqueue(session, events, now, found)


@dataclass(frozen=True, slots=True)
class _OpenRow:
    """What an outcome's webhook event says of its row."""

    tracking_id: str
    run_id: str
    journey_id: str
    node_id: str
    app_id: str
    profile_id: str
    device_id: int | None
    provider: str | None


async def _open_rows(session: AsyncSession, row_ids: Sequence[int]) -> dict[int, _OpenRow]:
    """The rows among these that no attempt has closed yet."""
    found: dict[int, _OpenRow] = {}
    for chunk in _chunks(list(row_ids), 900):
        result = await _execute(
            session,
            select_columns(
                col(Delivery.id),
                col(Delivery.tracking_id),
                col(Delivery.run_id),
                col(Delivery.journey_id),
                col(Delivery.node_id),
                col(Delivery.app_id),
                col(Delivery.profile_id),
                col(Delivery.device_id),
                col(Delivery.provider),
            )
            .where(one_of(session, col(Delivery.id), chunk))
            .where(col(Delivery.completed_at).is_(None)),
        )
        for row_id, tracking, run, journey, node, app, profile, device, provider in result.all():
            found[int(row_id or 0)] = _OpenRow(
                tracking, run, journey, node, app, profile, device, provider
            )
    return found


def outcome_event(row: _OpenRow, completion: Completion, now: datetime) -> WebhookEvent:
    """``push.sent`` for a push the provider accepted, else ``push.failed`` with its class
    (the ledger's final status) and the reason."""
    sent = completion.status is DeliveryStatus.DELIVERED
    data: dict[str, object] = {
        "tracking_id": row.tracking_id,
        "run_id": row.run_id,
        "journey_id": row.journey_id,
        "node_id": row.node_id,
        "profile_id": row.profile_id,
        "device_id": row.device_id,
        "provider": row.provider,
    }
    if not sent:
        data |= {
            "class": completion.status.value,
            "cause": completion.cause.value if completion.cause is not None else None,
            "reason": completion.reason,
        }
    return WebhookEvent(
        WebhookEventType.PUSH_SENT if sent else WebhookEventType.PUSH_FAILED,
        row.tracking_id,
        row.app_id,
        now,
        data,
    )


def _closed_event(
    item: PlannedSend, run_id: str, journey_id: str, node_id: str, app_id: str, now: datetime
) -> WebhookEvent:
    return WebhookEvent(
        WebhookEventType.PUSH_FAILED,
        item.tracking_id,
        app_id,
        now,
        {
            "tracking_id": item.tracking_id,
            "run_id": run_id,
            "journey_id": journey_id,
            "node_id": node_id,
            "profile_id": item.profile_id,
            "device_id": item.device_id,
            "provider": item.provider,
            "class": item.status.value,
            "cause": item.cause.value if item.cause is not None else None,
            "reason": item.reason,
        },
    )


async def settle_orphans(
    session: AsyncSession,
    *,
    workflow_id: str,
    node_id: str,
    visits: dict[str, int],
    planned_keys: set[str],
    now: datetime,
) -> int:
    """Close open rows of this node for these profiles that this attempt no longer plans
    (their device was invalidated, quarantined or moved between attempts). A row whose last
    request went out and got no answer stays ``unknown``: it may have been delivered."""
    orphans: list[Completion] = []
    profiles = list(visits)
    for chunk in _chunks(profiles, 900):
        result = await _execute(
            session,
            select_columns(
                col(Delivery.id),
                col(Delivery.send_key),
                col(Delivery.profile_id),
                col(Delivery.visit),
                col(Delivery.status),
            )
            .where(col(Delivery.workflow_id) == workflow_id)
            .where(col(Delivery.node_id) == node_id)
            .where(col(Delivery.completed_at).is_(None))
            .where(col(Delivery.profile_id).in_(chunk)),
        )
        for row_id, key, profile_id, visit, status in result.all():
            if key in planned_keys or visits.get(profile_id) != visit:
                continue
            sent = status == DeliveryStatus.UNKNOWN.value
            orphans.append(
                Completion(
                    int(row_id or 0),
                    DeliveryStatus.UNKNOWN if sent else DeliveryStatus.NOT_SENT,
                    ("sent, answer lost; " if sent else "") + "device no longer targeted",
                    None,
                    SendCause.UNTARGETED,
                    close=True,
                )
            )
    await complete_sends(session, orphans, now)
    return len(orphans)


async def _execute(session: AsyncSession, statement: Select[*Columns]) -> Result[*Columns]:
    """A Core select of more columns than sqlmodel's ``select`` is typed for."""
    connection = await session.connection()
    return await connection.execute(statement)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
