"""A run's pushes one by one (profile, device, tracking id, outcome), and one profile's
timeline of pushes and interactions: how a designer finds any push and what became of it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlmodel import col, select

from tidings.runs.errors import RunNotFound
from tidings.store.db import Database
from tidings.store.models import Delivery, Interaction, InteractionStatus, JourneyRun, Profile


class PushRecord(BaseModel):
    """One push of a run: a row of the send ledger."""

    id: int
    run_id: str
    journey_id: str
    node_id: str
    app_id: str
    profile_id: str
    device_id: int | None
    provider: str | None
    tracking_id: str
    # the ledger's status: delivered, failed, token_gone, not_sent, expired, unknown ...
    outcome: str
    reason: str | None
    cause: str | None
    attempts: int
    created_at: datetime
    completed_at: datetime | None


class TimelineEntry(BaseModel):
    """A push sent to the profile, or an interaction its device reported."""

    at: datetime
    kind: Literal["push", "interaction"]
    # push: the ledger's status; interaction: delivered, opened, clicked, dismissed
    what: str
    tracking_id: str
    run_id: str | None
    journey_id: str | None
    node_id: str | None
    app_id: str | None
    device_id: int | None
    reason: str | None = None


class ProfileNotFound(LookupError):
    pass


def push_record(row: Delivery) -> PushRecord:
    assert row.id is not None
    return PushRecord(
        id=row.id,
        run_id=row.run_id,
        journey_id=row.journey_id,
        node_id=row.node_id,
        app_id=row.app_id,
        profile_id=row.profile_id,
        device_id=row.device_id,
        provider=row.provider,
        tracking_id=row.tracking_id,
        outcome=str(row.status),
        reason=row.reason,
        cause=str(row.cause) if row.cause is not None else None,
        attempts=row.attempts,
        created_at=row.created_at,
        completed_at=row.completed_at,
    )


async def run_pushes(
    db: Database,
    run_id: str,
    *,
    after: int | None = None,
    limit: int = 100,
    outcome: str | None = None,
    node_id: str | None = None,
) -> list[PushRecord]:
    """In the order of their ledger id; ``after`` is the last id of the previous page."""
    statement = select(Delivery).where(col(Delivery.run_id) == run_id)
    if after is not None:
        statement = statement.where(col(Delivery.id) > after)
    if outcome is not None:
        statement = statement.where(col(Delivery.status) == outcome)
    if node_id is not None:
        statement = statement.where(col(Delivery.node_id) == node_id)
    async with db.read() as session:
        if await session.get(JourneyRun, run_id) is None:
            raise RunNotFound(f"no run {run_id!r}")
        rows = (await session.exec(statement.order_by(col(Delivery.id)).limit(limit))).all()
    return [push_record(row) for row in rows]


async def profile_timeline(
    db: Database, profile_id: str, *, limit: int = 200
) -> list[TimelineEntry]:
    """The profile's latest pushes and the interactions reported on them, oldest first
    (at most ``limit`` of each)."""
    async with db.read() as session:
        if await session.get(Profile, profile_id) is None:
            raise ProfileNotFound(f"no profile {profile_id!r}")
        pushes = (
            await session.exec(
                select(Delivery)
                .where(col(Delivery.profile_id) == profile_id)
                .order_by(col(Delivery.created_at).desc(), col(Delivery.id).desc())
                .limit(limit)
            )
        ).all()
        interactions = (
            await session.exec(
                select(Interaction, Delivery)
                .join(Delivery, col(Delivery.id) == col(Interaction.delivery_id))
                .where(col(Interaction.profile_id) == profile_id)
                .where(col(Interaction.status) == InteractionStatus.MATCHED.value)
                .order_by(col(Interaction.occurred_at).desc(), col(Interaction.id).desc())
                .limit(limit)
            )
        ).all()
    entries = [
        TimelineEntry(
            at=row.created_at,
            kind="push",
            what=str(row.status),
            tracking_id=row.tracking_id,
            run_id=row.run_id,
            journey_id=row.journey_id,
            node_id=row.node_id,
            app_id=row.app_id,
            device_id=row.device_id,
            reason=row.reason,
        )
        for row in pushes
    ]
    entries += [
        TimelineEntry(
            at=interaction.occurred_at,
            kind="interaction",
            what=str(interaction.kind),
            tracking_id=interaction.tracking_id,
            run_id=push.run_id,
            journey_id=push.journey_id,
            node_id=push.node_id,
            app_id=push.app_id,
            device_id=push.device_id,
        )
        for interaction, push in interactions
    ]
    entries.sort(key=lambda e: (e.at, e.kind != "push"))
    return entries
