"""Interaction reports: stored idempotently on the event id, matched to the ledger, and
kept as the outbox the forwarder drains (DESIGN.md decision 6).

An event id is an idempotency key within its scope, the app whose push the report is about
(or the reporting app, for an unknown tracking id): apps choose their own event ids, so one
app's ids must not collide with another's. Reporting an event id again with the same tracking
id, kind and action is a duplicate (nothing changes); with different ones it is a mistake the
caller must hear about (:class:`EventIdReused`, ``Recorded.conflict``), never a silent
duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, and_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store import outbox, webhooks
from tidings.store.dialect import insert_for
from tidings.store.models import Delivery, Interaction, InteractionKind, InteractionStatus
from tidings.store.models.interactions import NO_APP_SCOPE
from tidings.store.outbox import IN_CHUNK, ForwardState
from tidings.store.pages import Page, keyset
from tidings.store.types import utcnow
from tidings.store.webhooks import WebhookEvent, WebhookEventType


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


class EventIdReused(ValueError):
    """The event id was stored before, in the same scope, for another report."""

    def __init__(self, report: InteractionReport, stored: Interaction) -> None:
        super().__init__(reuse_message(report.event_id, stored.tracking_id, stored.kind))
        self.event_id = report.event_id
        self.stored = stored


def reuse_message(event_id: str, tracking_id: str, kind: str) -> str:
    return (
        f"event id {event_id!r} was already used for another report ({kind} of tracking id "
        f"{tracking_id!r}); give each report its own event id"
    )


def _what(report: InteractionReport) -> tuple[str, str, str | None]:
    """What makes a report the same report again."""
    return report.tracking_id, report.kind.value, report.action_id


def _stored_what(row: Interaction) -> tuple[str, str, str | None]:
    return row.tracking_id, InteractionKind(row.kind).value, row.action_id


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
    """Store the report (or find the one stored under its event id in its scope). Returns
    the row and whether this call stored it; raises :class:`EventIdReused` when the event id
    names another report. Unknown tracking ids are kept as ``unmatched`` (with the reporting
    app, when known, so that app can inspect them)."""
    if isinstance(delivery, _Lookup):
        delivery = await find_delivery(session, report.tracking_id)
    values = _row_values(report, delivery, unmatched_app_id, now)
    # RETURNING tells whether this statement inserted the row (psycopg reports no rowcount
    # for INSERT ... ON CONFLICT DO NOTHING)
    inserted = await session.exec(
        insert_for(session, Interaction)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["scope", "event_id"])
        .returning(col(Interaction.id))
    )
    created = inserted.first() is not None
    if created and delivery is not None:
        await webhooks.enqueue(session, _told([values], {report.tracking_id: delivery}), now)
    row = (
        await session.exec(
            select(Interaction)
            .where(col(Interaction.scope) == values["scope"])
            .where(col(Interaction.event_id) == report.event_id)
        )
    ).one()
    if not created and _stored_what(row) != _what(report):
        raise EventIdReused(report, row)
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
    # the event id names another report in its scope (see EventIdReused): nothing stored
    conflict: str | None = None


async def record_many(
    session: AsyncSession, submitted: Sequence[Submitted], now: datetime
) -> list[Recorded]:
    """Store many reports in a few statements: one query for their pushes, one multi-row
    insert (idempotent on scope and event id), one query for the reports stored before. A
    report whose tracking id is another app's push than its reporter's is refused and not
    stored; one that reuses an event id for another report is answered as a conflict."""
    deliveries = await _deliveries(session, {item.report.tracking_id for item in submitted})
    values: list[dict[str, Any]] = []
    keys: list[tuple[str, str] | None] = []  # per item; None: refused
    for item in submitted:
        delivery = deliveries.get(item.report.tracking_id)
        if delivery is not None and item.app_id is not None and delivery.app_id != item.app_id:
            keys.append(None)
            continue
        row = _row_values(item.report, delivery, item.app_id, now)
        values.append(row)
        keys.append((row["scope"], row["event_id"]))
    created: set[tuple[str, str]] = set()
    if values:
        # one cached statement run over many parameter sets (SQLAlchemy's "insertmanyvalues"):
        # a VALUES list of its own per batch size would be compiled again every time
        inserted = await session.exec(
            insert_for(session, Interaction)
            .on_conflict_do_nothing(index_elements=["scope", "event_id"])
            .returning(col(Interaction.scope), col(Interaction.event_id)),
            params=values,
        )
        created = {(scope, event_id) for scope, event_id in inserted.all()}
        stored: dict[tuple[str, str], dict[str, Any]] = {}
        for row in values:  # the first report of a key is the one that stored it
            stored.setdefault((row["scope"], row["event_id"]), row)
        await webhooks.enqueue(
            session, _told([stored[key] for key in created if key in stored], deliveries), now
        )
    # what each key now holds: the first report of it in this batch, if that one stored it
    holds: dict[tuple[str, str], _Held] = {}
    for row in values:
        stored_key: tuple[str, str] = (row["scope"], row["event_id"])
        if stored_key in created and stored_key not in holds:
            holds[stored_key] = _Held(
                (row["tracking_id"], row["kind"], row["action_id"]),
                InteractionStatus(row["status"]),
            )
    holds.update(await _held(session, {k for k in keys if k is not None and k not in created}))
    answers = []
    answered: set[tuple[str, str]] = set()
    for item, key in zip(submitted, keys, strict=True):
        event_id = item.report.event_id
        if key is None:
            answers.append(Recorded(event_id, None, created=False, forbidden=True))
            continue
        held = holds[key]
        if held.what != _what(item.report):
            message = reuse_message(event_id, held.what[0], held.what[1])
            answers.append(Recorded(event_id, None, created=False, conflict=message))
            continue
        # the first report of a key in the batch is the one that may have stored it
        answers.append(
            Recorded(event_id, held.status, created=key in created and key not in answered)
        )
        answered.add(key)
    return answers


@dataclass(frozen=True)
class _Held:
    what: tuple[str, str, str | None]
    status: InteractionStatus


async def _deliveries(session: AsyncSession, tracking_ids: set[str]) -> dict[str, Delivery]:
    ids = sorted(tracking_ids)
    found: dict[str, Delivery] = {}
    for start in range(0, len(ids), IN_CHUNK):
        rows = await session.exec(
            select(Delivery).where(col(Delivery.tracking_id).in_(ids[start : start + IN_CHUNK]))
        )
        found.update({row.tracking_id: row for row in rows.all()})
    return found


async def _held(session: AsyncSession, keys: set[tuple[str, str]]) -> dict[tuple[str, str], _Held]:
    """The stored reports under these (scope, event id) keys."""
    event_ids = sorted({event_id for _, event_id in keys})
    held: dict[tuple[str, str], _Held] = {}
    for start in range(0, len(event_ids), IN_CHUNK):
        rows = await session.exec(
            select(Interaction).where(
                col(Interaction.event_id).in_(event_ids[start : start + IN_CHUNK])
            )
        )
        for row in rows.all():
            if (row.scope, row.event_id) in keys:
                held[(row.scope, row.event_id)] = _Held(
                    _stored_what(row), InteractionStatus(row.status)
                )
    return held


TOLD = {
    InteractionKind.DELIVERED.value: WebhookEventType.PUSH_DELIVERED,
    InteractionKind.OPENED.value: WebhookEventType.PUSH_OPENED,
    InteractionKind.CLICKED.value: WebhookEventType.PUSH_CLICKED,
}


def _told(rows: Sequence[dict[str, Any]], deliveries: dict[str, Delivery]) -> list[WebhookEvent]:
    """The webhook events of newly stored reports about known pushes (dismissals are not
    told)."""
    events = []
    for row in rows:
        delivery = deliveries.get(row["tracking_id"])
        kind = TOLD.get(row["kind"])
        if delivery is None or kind is None:
            continue
        events.append(
            WebhookEvent(
                kind,
                f"{row['scope']}:{row['event_id']}",
                delivery.app_id,
                row["occurred_at"],
                {
                    "tracking_id": delivery.tracking_id,
                    "event_id": row["event_id"],
                    "action_id": row["action_id"],
                    "run_id": delivery.run_id,
                    "journey_id": delivery.journey_id,
                    "node_id": delivery.node_id,
                    "profile_id": delivery.profile_id,
                    "device_id": delivery.device_id,
                    "source": row["source"],
                },
            )
        )
    return events


def _row_values(
    report: InteractionReport, delivery: Delivery | None, reporter: str | None, now: datetime
) -> dict[str, Any]:
    app_id = delivery.app_id if delivery else reporter
    return {
        "scope": app_id or NO_APP_SCOPE,
        "event_id": report.event_id,
        "tracking_id": report.tracking_id,
        "kind": report.kind.value,
        "action_id": report.action_id,
        "status": (InteractionStatus.MATCHED if delivery else InteractionStatus.UNMATCHED).value,
        "delivery_id": delivery.id if delivery else None,
        "app_id": app_id,
        "profile_id": delivery.profile_id if delivery else None,
        "workflow_id": delivery.workflow_id if delivery else None,
        "node_id": delivery.node_id if delivery else None,
        "source": report.source,
        # the ledger row's visit: which send of its node the interaction is about
        "details": ({"device_token": report.device_token_hint} if report.device_token_hint else {})
        | ({"visit": delivery.visit} if delivery else {}),
        "occurred_at": report.occurred_at,
        "received_at": now,
        "forward_attempts": 0,
        "forward_failures": 0,
        "next_attempt_at": None,
        "forward_failed_at": None,
        "forwarded_at": None,
        "last_error": None,
    }


def forward_state(row: Interaction) -> ForwardState:
    if InteractionStatus(row.status) is InteractionStatus.UNMATCHED:
        return ForwardState.NEVER
    if row.forwarded_at is not None:
        return ForwardState.FORWARDED
    if row.forward_failed_at is not None:
        return ForwardState.FAILED
    return ForwardState.PENDING


def in_forward_state(state: ForwardState) -> ColumnElement[bool]:
    matched = col(Interaction.status) == InteractionStatus.MATCHED.value
    if state is ForwardState.NEVER:
        return col(Interaction.status) == InteractionStatus.UNMATCHED.value
    if state is ForwardState.FORWARDED:
        return and_(matched, col(Interaction.forwarded_at).is_not(None))
    if state is ForwardState.FAILED:
        return and_(matched, col(Interaction.forward_failed_at).is_not(None))
    return and_(
        matched,
        col(Interaction.forwarded_at).is_(None),
        col(Interaction.forward_failed_at).is_(None),
    )


async def list_interactions(
    session: AsyncSession,
    *,
    app_id: str | None,
    status: InteractionStatus | None,
    tracking_id: str | None,
    after: int | None,
    limit: int,
    forwarding: ForwardState | None = None,
) -> Page[Interaction]:
    statement = select(Interaction)
    if app_id is not None:
        statement = statement.where(col(Interaction.app_id) == app_id)
    if status is not None:
        statement = statement.where(col(Interaction.status) == status.value)
    if tracking_id is not None:
        statement = statement.where(col(Interaction.tracking_id) == tracking_id)
    if forwarding is not None:
        statement = statement.where(in_forward_state(forwarding))
    return await keyset(session, statement, col(Interaction.id), after, limit)


# --- the outbox --------------------------------------------------------------------------


async def unforwarded(
    session: AsyncSession, limit: int, *, lock: bool, now: datetime | None = None
) -> list[Interaction]:
    """The oldest matched interactions due for forwarding: not forwarded, not given up, and
    not backing off. With ``lock`` (PostgreSQL) the rows are locked ``FOR UPDATE SKIP
    LOCKED`` until the session ends, so forwarders running side by side take disjoint
    batches."""
    statement = (
        select(Interaction)
        .where(in_forward_state(ForwardState.PENDING))
        .where(outbox.due(Interaction, now or utcnow()))
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
    await outbox.mark_forwarded(session, Interaction, ids, now, note)


async def note_forward_failure(session: AsyncSession, ids: Sequence[int], error: str) -> None:
    await outbox.note_forward_failure(session, Interaction, ids, error)


async def defer_forwarding(
    session: AsyncSession, ids: Sequence[int], error: str, retry_at: datetime
) -> None:
    await outbox.defer_forwarding(session, Interaction, ids, error, retry_at)


async def give_up_forwarding(
    session: AsyncSession, ids: Sequence[int], error: str, now: datetime
) -> None:
    """Refused once too often (``GET /v1/interactions?forwarding=failed``)."""
    await outbox.give_up_forwarding(session, Interaction, ids, error, now)


async def requeue_failed(
    session: AsyncSession, *, app_id: str | None, event_ids: Sequence[str] | None
) -> int:
    """Give interactions the forwarder gave up on another round of attempts (after ops fixed
    what Temporal refused them for): only given-up rows, of ``app_id``'s pushes unless None,
    and of ``event_ids`` when given. How many were requeued."""
    statement = (
        update(Interaction).where(in_forward_state(ForwardState.FAILED)).values(outbox.REQUEUED)
    )
    if app_id is not None:
        statement = statement.where(col(Interaction.app_id) == app_id)
    if event_ids is not None:
        statement = statement.where(col(Interaction.event_id).in_(list(event_ids)))
    result = await session.exec(statement)
    return int(result.rowcount)
