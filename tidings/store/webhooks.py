"""Webhook endpoints and their outbox in the store.

Events are queued by whoever commits the fact they report, in that fact's transaction
(:func:`enqueue`): the ledger's completions (:mod:`tidings.store.ledger`), token
invalidations (delivery's group commits), interactions (:mod:`tidings.store.interactions`)
and runs (:mod:`tidings.store.journeys`). Each event gets one ``webhook_delivery`` row per
endpoint subscribed to its type and app, idempotent on (endpoint, event id); with no
endpoint subscribed, queuing costs one read of the small endpoint table.
"""

from __future__ import annotations

import secrets as random_secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store import outbox
from tidings.store.dialect import insert_for
from tidings.store.models import WebhookDelivery, WebhookEndpoint
from tidings.store.outbox import IN_CHUNK
from tidings.store.pages import Page, keyset

EVENT_NAMESPACE = uuid.UUID("0c7f3a52-55a4-4c1e-8d44-bf0b1c1a9e21")


class WebhookEventType(StrEnum):
    """What an endpoint may subscribe to."""

    PUSH_SENT = "push.sent"  # the provider accepted the push
    PUSH_DELIVERED = "push.delivered"  # the device reported it delivered
    PUSH_FAILED = "push.failed"  # closed without reaching the provider's yes: class, reason
    TOKEN_INVALIDATED = "token.invalidated"  # a token the provider reported gone or suspect
    PUSH_OPENED = "push.opened"
    PUSH_CLICKED = "push.clicked"
    RUN_STARTED = "run.started"
    RUN_FINISHED = "run.finished"


class DeliveryState(StrEnum):
    """Where one event stands with one endpoint."""

    PENDING = "pending"  # waiting for the dispatcher (perhaps backing off)
    SENT = "sent"  # the endpoint answered 2xx
    FAILED = "failed"  # set aside after the dispatcher's limit: requeue to try again


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One fact to tell: ``subject`` names what it is about (a tracking id, a run id ...),
    so the same fact always gets the same event id."""

    type: WebhookEventType
    subject: str
    app_id: str | None
    occurred_at: datetime
    data: dict[str, Any]

    @property
    def event_id(self) -> str:
        return "evt_" + uuid.uuid5(EVENT_NAMESPACE, f"{self.type.value}:{self.subject}").hex

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.event_id,
            "type": self.type.value,
            "created_at": self.occurred_at.isoformat().replace("+00:00", "Z"),
            "app_id": self.app_id,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class _Subscription:
    endpoint_id: str
    app_id: str | None
    types: frozenset[str]


@dataclass(frozen=True)
class Subscribers:
    """The endpoints subscribed to anything, as one transaction saw them."""

    subscriptions: tuple[_Subscription, ...] = ()

    def endpoints_for(self, event_type: WebhookEventType, app_id: str | None) -> list[str]:
        return [
            s.endpoint_id
            for s in self.subscriptions
            if event_type.value in s.types and (s.app_id is None or s.app_id == app_id)
        ]

    def wants(self, types: Iterable[WebhookEventType]) -> bool:
        """Whether any endpoint, of any app, takes one of these types."""
        wanted = {t.value for t in types}
        return any(wanted & s.types for s in self.subscriptions)


async def subscribers(session: AsyncSession) -> Subscribers:
    rows = await session.exec(
        select(
            col(WebhookEndpoint.id), col(WebhookEndpoint.app_id), col(WebhookEndpoint.event_types)
        )
    )
    return Subscribers(
        tuple(_Subscription(endpoint, app, frozenset(types)) for endpoint, app, types in rows)
    )


async def enqueue(
    session: AsyncSession,
    events: Sequence[WebhookEvent],
    now: datetime,
    found: Subscribers | None = None,
) -> int:
    """Queue each event for every endpoint subscribed to it (in the caller's transaction);
    an event queued before for an endpoint is left as it is. How many rows were offered."""
    if not events:
        return 0
    found = found if found is not None else await subscribers(session)
    values = [
        {
            "endpoint_id": endpoint_id,
            "event_id": event.event_id,
            "event_type": event.type.value,
            "profile_id": event.data.get("profile_id"),
            "payload": event.payload(),
            "created_at": now,
            "forwarded_at": None,
            "forward_attempts": 0,
            "forward_failures": 0,
            "next_attempt_at": None,
            "forward_failed_at": None,
            "last_error": None,
        }
        for event in events
        for endpoint_id in found.endpoints_for(event.type, event.app_id)
    ]
    if values:
        await session.exec(
            insert_for(session, WebhookDelivery).on_conflict_do_nothing(
                index_elements=["endpoint_id", "event_id"]
            ),
            params=values,
        )
    return len(values)


# --- endpoints ------------------------------------------------------------------------------


def new_endpoint_id() -> str:
    return "wh_" + random_secrets.token_hex(8)


def new_signing_secret() -> str:
    """What a receiver verifies signatures with: shown once, stored sealed."""
    return "whsec_" + random_secrets.token_urlsafe(32)


async def add_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    session.add(endpoint)
    await session.flush()
    return endpoint


def _visible(app_id: str | None) -> ColumnElement[bool]:
    """The endpoints a caller may see: every one for the admin (None), else its app's."""
    if app_id is None:
        return col(WebhookEndpoint.id).is_not(None)
    return col(WebhookEndpoint.app_id) == app_id


async def get_endpoint(
    session: AsyncSession, endpoint_id: str, *, app_id: str | None = None
) -> WebhookEndpoint | None:
    """The endpoint, if the caller (``app_id``; None: the admin) may see it."""
    return (
        await session.exec(
            select(WebhookEndpoint)
            .where(col(WebhookEndpoint.id) == endpoint_id)
            .where(_visible(app_id))
        )
    ).first()


async def list_endpoints(
    session: AsyncSession, *, app_id: str | None, after: str | None, limit: int
) -> Page[WebhookEndpoint]:
    statement = select(WebhookEndpoint).where(_visible(app_id))
    return await keyset(session, statement, col(WebhookEndpoint.id), after, limit)


async def delete_endpoint(session: AsyncSession, endpoint_id: str) -> None:
    """The endpoint and every event still bound for it."""
    await session.exec(
        delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint_id)
    )
    await session.exec(delete(WebhookEndpoint).where(col(WebhookEndpoint.id) == endpoint_id))


async def set_paused(session: AsyncSession, endpoint_id: str, paused_at: datetime | None) -> None:
    await session.exec(
        update(WebhookEndpoint)
        .where(col(WebhookEndpoint.id) == endpoint_id)
        .values(paused_at=paused_at)
    )


@dataclass
class EndpointCounts:
    pending: int = 0
    sent: int = 0
    failed: int = 0


async def delivery_counts(
    session: AsyncSession, endpoint_ids: Sequence[str]
) -> dict[str, EndpointCounts]:
    """Events per endpoint, by where they stand."""
    counts: dict[str, EndpointCounts] = {e: EndpointCounts() for e in endpoint_ids}
    if not endpoint_ids:
        return counts
    state = _state_expression()
    rows = await session.exec(
        select(col(WebhookDelivery.endpoint_id), state, func.count())
        .where(col(WebhookDelivery.endpoint_id).in_(list(endpoint_ids)))
        .group_by(col(WebhookDelivery.endpoint_id), state)
    )
    for endpoint_id, where, count in rows:
        setattr(counts[endpoint_id], str(where), int(count))
    return counts


def _state_expression() -> Any:
    from sqlalchemy import case

    return case(
        (col(WebhookDelivery.forwarded_at).is_not(None), DeliveryState.SENT.value),
        (col(WebhookDelivery.forward_failed_at).is_not(None), DeliveryState.FAILED.value),
        else_=DeliveryState.PENDING.value,
    )


def in_state(state: DeliveryState) -> ColumnElement[bool]:
    if state is DeliveryState.SENT:
        return col(WebhookDelivery.forwarded_at).is_not(None)
    if state is DeliveryState.FAILED:
        return col(WebhookDelivery.forward_failed_at).is_not(None)
    return and_(
        col(WebhookDelivery.forwarded_at).is_(None),
        col(WebhookDelivery.forward_failed_at).is_(None),
    )


def state_of(row: WebhookDelivery) -> DeliveryState:
    if row.forwarded_at is not None:
        return DeliveryState.SENT
    if row.forward_failed_at is not None:
        return DeliveryState.FAILED
    return DeliveryState.PENDING


async def list_deliveries(
    session: AsyncSession,
    endpoint_id: str,
    *,
    state: DeliveryState | None,
    after: int | None,
    limit: int,
) -> Page[WebhookDelivery]:
    statement = select(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint_id)
    if state is not None:
        statement = statement.where(in_state(state))
    return await keyset(session, statement, col(WebhookDelivery.id), after, limit)


async def requeue_failed(session: AsyncSession, endpoint_id: str) -> int:
    """Give the endpoint's set-aside events another round of attempts; how many."""
    result = await session.exec(
        update(WebhookDelivery)
        .where(col(WebhookDelivery.endpoint_id) == endpoint_id)
        .where(in_state(DeliveryState.FAILED))
        .values(outbox.REQUEUED)
    )
    return int(result.rowcount)


# --- the dispatcher's side of the outbox ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row the dispatcher holds for one attempt, with what it needs to send it."""

    id: int
    endpoint_id: str
    event_id: str
    payload: dict[str, Any]
    failures: int


@dataclass
class ClaimedBatch:
    rows: list[Claimed] = field(default_factory=list)
    # endpoint id -> (url, sealed secret)
    endpoints: dict[str, tuple[str, str]] = field(default_factory=dict)


def _due(now: datetime) -> Any:
    """Rows waiting for a dispatcher now, of endpoints that are not paused."""
    return (
        select(WebhookDelivery)
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
        .where(in_state(DeliveryState.PENDING))
        .where(
            or_(
                col(WebhookDelivery.next_attempt_at).is_(None),
                col(WebhookDelivery.next_attempt_at) <= now,
            )
        )
        .where(col(WebhookEndpoint.paused_at).is_(None))
    )


async def any_due(session: AsyncSession, now: datetime) -> bool:
    """Whether a round has anything to claim: asked in a read, so an idle dispatcher never
    takes SQLite's write lock."""
    return (await session.exec(_due(now).limit(1))).first() is not None


async def claim_due(
    session: AsyncSession, limit: int, now: datetime, lease: timedelta, *, lock: bool
) -> ClaimedBatch:
    """The oldest due rows of endpoints not paused, leased until ``now + lease`` (another
    dispatcher skips them meanwhile; a dispatcher that dies leaves them due again when the
    lease ends). With ``lock`` (PostgreSQL) the read takes ``FOR UPDATE SKIP LOCKED``."""
    statement = _due(now).order_by(col(WebhookDelivery.id)).limit(limit)
    if lock:
        statement = statement.with_for_update(skip_locked=True, of=WebhookDelivery)
    rows = list((await session.exec(statement)).all())
    batch = ClaimedBatch()
    if not rows:
        return batch
    ids = [int(row.id or 0) for row in rows]
    for start in range(0, len(ids), IN_CHUNK):
        await session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id).in_(ids[start : start + IN_CHUNK]))
            .values(next_attempt_at=now + lease)
        )
    endpoint_ids = sorted({row.endpoint_id for row in rows})
    found = await session.exec(
        select(
            col(WebhookEndpoint.id), col(WebhookEndpoint.url), col(WebhookEndpoint.secret)
        ).where(col(WebhookEndpoint.id).in_(endpoint_ids))
    )
    batch.endpoints = {endpoint_id: (url, secret) for endpoint_id, url, secret in found}
    batch.rows = [
        Claimed(int(row.id or 0), row.endpoint_id, row.event_id, row.payload, row.forward_failures)
        for row in rows
    ]
    return batch


async def mark_sent(session: AsyncSession, ids: Sequence[int], now: datetime, note: str) -> None:
    await outbox.mark_forwarded(session, WebhookDelivery, ids, now, note)


async def defer(session: AsyncSession, ids: Sequence[int], error: str, retry_at: datetime) -> None:
    await outbox.defer_forwarding(session, WebhookDelivery, ids, error, retry_at)


async def set_aside(session: AsyncSession, ids: Sequence[int], error: str, now: datetime) -> None:
    await outbox.give_up_forwarding(session, WebhookDelivery, ids, error, now)


async def release(session: AsyncSession, ids: Sequence[int], retry_at: datetime) -> None:
    """Rows claimed but not tried (their endpoint failed first this round): due again at
    ``retry_at``, no attempt counted."""
    for chunk in outbox.chunks(ids):
        await session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id).in_(chunk))
            .where(col(WebhookDelivery.forwarded_at).is_(None))
            .values(next_attempt_at=retry_at)
        )


async def pseudonymise(session: AsyncSession, profile_id: str, pseudonym: str) -> int:
    """An erased profile's events name it by its pseudonym from now on, in the outbox and in
    what is still to be sent (tidings.store.erasure); how many."""
    rows = (
        await session.exec(
            select(WebhookDelivery).where(col(WebhookDelivery.profile_id) == profile_id)
        )
    ).all()
    for row in rows:
        payload = dict(row.payload)
        payload["data"] = dict(payload.get("data") or {}) | {"profile_id": pseudonym}
        await session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == row.id)
            .values(profile_id=pseudonym, payload=payload)
        )
    return len(rows)


async def prune_sent(session: AsyncSession, before: datetime) -> int:
    """Forget events sent before ``before`` (the outbox is no archive)."""
    result = await session.exec(
        delete(WebhookDelivery)
        .where(col(WebhookDelivery.forwarded_at).is_not(None))
        .where(col(WebhookDelivery.forwarded_at) < before)
    )
    return int(result.rowcount)
