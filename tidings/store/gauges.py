"""Counts of the store's work in progress, sampled for the metrics (tidings.observe)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store import custom_events as stored_events
from tidings.store import interactions as stored_interactions
from tidings.store import webhooks as stored_webhooks
from tidings.store.models import CustomEvent, Delivery, Interaction, JourneyRun, WebhookDelivery
from tidings.store.models.journeys import RunStatus
from tidings.store.outbox import ForwardState


@dataclass(frozen=True, slots=True)
class Backlog:
    waiting: int
    oldest: datetime | None


@dataclass(frozen=True, slots=True)
class WorkInProgress:
    open_ledger_rows: int
    runs_in_flight: int
    interactions: Backlog
    custom_events: Backlog
    webhooks: Backlog  # events waiting for an endpoint (not those set aside)


async def work_in_progress(session: AsyncSession) -> WorkInProgress:
    open_rows = await session.exec(
        select(func.count()).select_from(Delivery).where(col(Delivery.completed_at).is_(None))
    )
    runs = await session.exec(
        select(func.count())
        .select_from(JourneyRun)
        .where(col(JourneyRun.status) == RunStatus.RUNNING.value)
    )
    interactions = await session.exec(
        select(func.count(), func.min(col(Interaction.received_at))).where(
            stored_interactions.in_forward_state(ForwardState.PENDING)
        )
    )
    events = await session.exec(
        select(func.count(), func.min(col(CustomEvent.received_at))).where(
            stored_events.in_forward_state(ForwardState.PENDING)
        )
    )
    told = await session.exec(
        select(func.count(), func.min(col(WebhookDelivery.created_at))).where(
            stored_webhooks.in_state(stored_webhooks.DeliveryState.PENDING)
        )
    )
    waiting_interactions, oldest_interaction = interactions.one()
    waiting_webhooks, oldest_webhook = told.one()
    waiting_events, oldest_event = events.one()
    return WorkInProgress(
        open_ledger_rows=int(open_rows.one()),
        runs_in_flight=int(runs.one()),
        interactions=Backlog(int(waiting_interactions), oldest_interaction),
        custom_events=Backlog(int(waiting_events), oldest_event),
        webhooks=Backlog(int(waiting_webhooks), oldest_webhook),
    )
