"""Interaction reports: stored idempotently on the event id, matched to the ledger, and
kept as the outbox the forwarder drains (DESIGN.md decision 6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import insert_for
from tidings.store.models import Delivery, Interaction, InteractionKind, InteractionStatus
from tidings.store.pages import Page, keyset


@dataclass(frozen=True)
class InteractionReport:
    event_id: str
    tracking_id: str
    kind: InteractionKind
    action_id: str | None
    occurred_at: datetime
    source: str
    device_token_hint: str | None = None


class _Lookup(Enum):
    BY_TRACKING_ID = 0


def default_event_id(tracking_id: str, kind: InteractionKind, action_id: str | None) -> str:
    """Without an event id, one report per push, kind and action: the native API and the
    compatible surface compute the same id, so the same open reported through both counts
    once."""
    return f"{tracking_id}:{kind.value}:{action_id or ''}"


async def find_delivery(session: AsyncSession, tracking_id: str) -> Delivery | None:
    return (
        await session.exec(select(Delivery).where(col(Delivery.tracking_id) == tracking_id))
    ).first()


async def record_interaction(
    session: AsyncSession,
    report: InteractionReport,
    now: datetime,
    *,
    delivery: Delivery | _Lookup | None = _Lookup.BY_TRACKING_ID,
    unmatched_app_id: str | None = None,
) -> tuple[Interaction, bool]:
    """Store the report (or find the one stored under its event id). Returns the row and
    whether this call stored it. Unknown tracking ids are kept as ``unmatched`` (with the
    reporting app, when known, so that app can inspect them)."""
    if isinstance(delivery, _Lookup):
        delivery = await find_delivery(session, report.tracking_id)
    values = _row_values(report, delivery, unmatched_app_id, now)
    # RETURNING tells whether this statement inserted the row (psycopg reports no rowcount
    # for INSERT ... ON CONFLICT DO NOTHING)
    inserted = await session.exec(
        insert_for(session, Interaction)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(col(Interaction.id))
    )
    created = inserted.first() is not None
    row = (
        await session.exec(select(Interaction).where(col(Interaction.event_id) == report.event_id))
    ).one()
    return row, created


@dataclass(frozen=True)
class Submitted:
    """A report, and the app whose key reported it (None: the admin)."""

    report: InteractionReport
    app_id: str | None


@dataclass(frozen=True)
class Recorded:
    """What became of a submitted report."""

    event_id: str
    status: InteractionStatus | None  # None: refused, nothing stored
    created: bool
    forbidden: bool = False  # its tracking id is another app's push


async def record_many(
    session: AsyncSession, submitted: Sequence[Submitted], now: datetime
) -> list[Recorded]:
    """Store many reports in a few statements: one query for their pushes, one multi-row
    insert (idempotent on the event id), one query for the reports stored before. A report
    whose tracking id is another app's push than its reporter's is refused and not stored."""
    tracking_ids = list({item.report.tracking_id for item in submitted})
    deliveries: dict[str, Delivery] = {}
    for start in range(0, len(tracking_ids), 900):
        rows = await session.exec(
            select(Delivery).where(col(Delivery.tracking_id).in_(tracking_ids[start : start + 900]))
        )
        deliveries.update({row.tracking_id: row for row in rows.all()})
    values: list[dict[str, Any]] = []
    refused: set[int] = set()
    for index, item in enumerate(submitted):
        delivery = deliveries.get(item.report.tracking_id)
        if delivery is not None and item.app_id is not None and delivery.app_id != item.app_id:
            refused.add(index)
            continue
        values.append(_row_values(item.report, delivery, item.app_id, now))
    created: set[str] = set()
    if values:
        # one cached statement run over many parameter sets (SQLAlchemy's "insertmanyvalues"):
        # a VALUES list of its own per batch size would be compiled again every time
        inserted = await session.exec(
            insert_for(session, Interaction)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(col(Interaction.event_id)),
            params=values,
        )
        created = {row[0] for row in inserted.all()}
    statuses: dict[str, InteractionStatus] = {
        v["event_id"]: InteractionStatus(v["status"]) for v in values if v["event_id"] in created
    }
    earlier = [v["event_id"] for v in values if v["event_id"] not in created]
    if earlier:
        stored = await session.exec(
            select(col(Interaction.event_id), col(Interaction.status)).where(
                col(Interaction.event_id).in_(earlier)
            )
        )
        statuses.update({event_id: InteractionStatus(status) for event_id, status in stored.all()})
    answers = []
    first_of: set[str] = set()
    for index, item in enumerate(submitted):
        event_id = item.report.event_id
        if index in refused:
            answers.append(Recorded(event_id, None, created=False, forbidden=True))
            continue
        # the first report of an event id in the batch is the one that may have stored it
        new = event_id in created and event_id not in first_of
        first_of.add(event_id)
        answers.append(Recorded(event_id, statuses[event_id], created=new))
    return answers


def _row_values(
    report: InteractionReport, delivery: Delivery | None, reporter: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "event_id": report.event_id,
        "tracking_id": report.tracking_id,
        "kind": report.kind.value,
        "action_id": report.action_id,
        "status": (InteractionStatus.MATCHED if delivery else InteractionStatus.UNMATCHED).value,
        "delivery_id": delivery.id if delivery else None,
        "app_id": delivery.app_id if delivery else reporter,
        "profile_id": delivery.profile_id if delivery else None,
        "workflow_id": delivery.workflow_id if delivery else None,
        "node_id": delivery.node_id if delivery else None,
        "source": report.source,
        "details": {"device_token": report.device_token_hint} if report.device_token_hint else {},
        "occurred_at": report.occurred_at,
        "received_at": now,
        "forward_attempts": 0,
        "forwarded_at": None,
        "last_error": None,
    }


async def list_interactions(
    session: AsyncSession,
    *,
    app_id: str | None,
    status: InteractionStatus | None,
    tracking_id: str | None,
    after: int | None,
    limit: int,
) -> Page[Interaction]:
    statement = select(Interaction)
    if app_id is not None:
        statement = statement.where(col(Interaction.app_id) == app_id)
    if status is not None:
        statement = statement.where(col(Interaction.status) == status.value)
    if tracking_id is not None:
        statement = statement.where(col(Interaction.tracking_id) == tracking_id)
    return await keyset(session, statement, col(Interaction.id), after, limit)


# --- the outbox --------------------------------------------------------------------------


async def unforwarded(session: AsyncSession, limit: int, *, lock: bool) -> list[Interaction]:
    """The oldest matched interactions not yet forwarded. With ``lock`` (PostgreSQL) the rows
    are locked ``FOR UPDATE SKIP LOCKED`` until the session ends, so forwarders running side
    by side take disjoint batches."""
    statement = (
        select(Interaction)
        .where(col(Interaction.status) == InteractionStatus.MATCHED.value)
        .where(col(Interaction.forwarded_at).is_(None))
        .order_by(col(Interaction.id))
        .limit(limit)
    )
    if lock:
        statement = statement.with_for_update(skip_locked=True)
    return list((await session.exec(statement)).all())


async def mark_forwarded(
    session: AsyncSession, ids: Sequence[int], now: datetime, note: str | None = None
) -> None:
    """Done with these rows: signalled, or (with a note) not deliverable at all, such as
    events for a workflow that has completed."""
    for start in range(0, len(ids), 900):
        await session.exec(
            update(Interaction)
            .where(col(Interaction.id).in_(ids[start : start + 900]))
            .where(col(Interaction.forwarded_at).is_(None))
            .values(
                forwarded_at=now,
                forward_attempts=col(Interaction.forward_attempts) + 1,
                last_error=note,
            )
        )


async def note_forward_failure(session: AsyncSession, ids: Sequence[int], error: str) -> None:
    """A failed attempt: the rows stay in the outbox, with why."""
    for start in range(0, len(ids), 900):
        await session.exec(
            update(Interaction)
            .where(col(Interaction.id).in_(ids[start : start + 900]))
            .values(
                forward_attempts=col(Interaction.forward_attempts) + 1,
                last_error=error[:2000],
            )
        )
