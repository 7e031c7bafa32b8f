"""What an experiment split's report is counted from: the branch each profile took (journey
events ``split`` and ``promoted``, written by the cohorts), the conversions the store already
holds (matched interactions with the run's pushes, custom events), and the split's promotion
(one journey event ``promotion`` per run and split, naming no profile)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.journeys.model import ExperimentGoal
from tidings.store.dialect import insert_for
from tidings.store.models import (
    CustomEvent,
    Delivery,
    Interaction,
    InteractionStatus,
    JourneyEvent,
)
from tidings.store.reports import OPENED_KINDS
from tidings.store.types import utcnow

DRAWN = "split"
PROMOTED = "promoted"
PROMOTION = "promotion"


@dataclass(frozen=True)
class Membership:
    """The branch a profile took at the split (its first pass), when, and whether by the
    draw (a member of the experiment) or by the promotion."""

    branch: int
    at: datetime
    drawn: bool


@dataclass(frozen=True)
class Promotion:
    branch: int
    at: datetime
    by: str  # auto, api, cli, console


async def memberships(session: AsyncSession, run_id: str, node_id: str) -> dict[str, Membership]:
    rows = await session.exec(
        select(
            col(JourneyEvent.profile_id),
            col(JourneyEvent.kind),
            col(JourneyEvent.detail),
            col(JourneyEvent.occurred_at),
        )
        .where(col(JourneyEvent.run_id) == run_id)
        .where(col(JourneyEvent.node_id) == node_id)
        .where(col(JourneyEvent.kind).in_((DRAWN, PROMOTED)))
        .order_by(col(JourneyEvent.id))
    )
    found: dict[str, Membership] = {}
    for profile_id, kind, detail, at in rows.all():
        if profile_id not in found and detail is not None:
            found[profile_id] = Membership(int(detail), at, kind == DRAWN)
    return found


async def converted(
    session: AsyncSession,
    run_id: str,
    goal: ExperimentGoal,
    window: timedelta,
    members: dict[str, Membership],
) -> set[str]:
    """The members whose goal happened within ``window`` of taking their branch: a matched
    interaction with a push of the run (opened counts a click, as the funnel does), or a
    custom event of the goal's name."""
    if goal.event is not None:
        statement = (
            select(col(CustomEvent.profile_id), col(CustomEvent.occurred_at))
            .join(JourneyEvent, col(JourneyEvent.profile_id) == col(CustomEvent.profile_id))
            .where(col(JourneyEvent.run_id) == run_id)
            .where(col(JourneyEvent.kind) == DRAWN)
            .where(col(CustomEvent.name) == goal.event)
            .distinct()
        )
    else:
        kinds = OPENED_KINDS if goal.interaction == "opened" else ("clicked",)
        statement = (
            select(col(Delivery.profile_id), col(Interaction.occurred_at))
            .join(Delivery, col(Delivery.id) == col(Interaction.delivery_id))
            .where(col(Delivery.run_id) == run_id)
            .where(col(Interaction.status) == InteractionStatus.MATCHED.value)
            .where(col(Interaction.kind).in_(kinds))
        )
        if goal.node is not None:
            statement = statement.where(col(Delivery.node_id) == goal.node)
    rows = await session.exec(statement)
    hits: set[str] = set()
    for profile_id, at in rows.all():
        member = members.get(profile_id)
        if member is not None and member.at <= at <= member.at + window:
            hits.add(profile_id)
    return hits


async def promotion_of(session: AsyncSession, run_id: str, node_id: str) -> Promotion | None:
    row = (
        await session.exec(
            select(JourneyEvent)
            .where(col(JourneyEvent.event_key) == _promotion_key(run_id, node_id))
            .limit(1)
        )
    ).first()
    if row is None or row.detail is None:
        return None
    detail = json.loads(row.detail)
    return Promotion(int(detail["branch"]), row.occurred_at, str(detail["by"]))


async def record_promotion(
    session: AsyncSession, *, run_id: str, journey_id: str, node_id: str, branch: int, by: str
) -> Promotion:
    """Record the split's promotion unless one is recorded already; the one that stands."""
    statement = insert_for(session, JourneyEvent).on_conflict_do_nothing(
        index_elements=["event_key"]
    )
    await session.exec(
        statement,
        params=[
            {
                "event_key": _promotion_key(run_id, node_id),
                "run_id": run_id,
                "journey_id": journey_id,
                "workflow_id": run_id,
                "profile_id": "",
                "node_id": node_id,
                "kind": PROMOTION,
                "until": None,
                "detail": json.dumps({"branch": branch, "by": by}),
                "occurred_at": utcnow(),
            }
        ],
    )
    standing = await promotion_of(session, run_id, node_id)
    assert standing is not None
    return standing


def _promotion_key(run_id: str, node_id: str) -> str:
    return f"{run_id}:promotion:{node_id}"
