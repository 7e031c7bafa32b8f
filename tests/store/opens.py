"""Opens as the store keeps them, seeded directly: a delivered push (a ledger row) and the
interactions reported on it, matched to it as the API matches them."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, insert
from sqlmodel import col

from tidings.store.db import Database
from tidings.store.models import Delivery, Interaction, Profile
from tidings.store.types import utcnow

_sends = itertools.count(1)


async def seed_profile(db: Database, profile_id: str, timezone: str | None) -> None:
    async with db.write() as session:
        session.add(Profile(id=profile_id, timezone=timezone))


async def seed_opens(
    db: Database,
    app_id: str,
    profile_id: str,
    opened: list[datetime],
    *,
    kinds: tuple[str, ...] = ("opened",),
) -> None:
    """One push per instant in ``opened``, sent a minute before and reported as each of
    ``kinds`` at that instant."""
    deliveries = []
    interactions = []
    for at in opened:
        n = next(_sends)
        tracking_id = uuid.uuid4().hex
        deliveries.append(
            {
                "send_key": f"seed:{n}",
                "tracking_id": tracking_id,
                "run_id": "seeded",
                "workflow_id": "seeded",
                "journey_id": "seeded",
                "node_id": "push",
                "visit": 0,
                "app_id": app_id,
                "profile_id": profile_id,
                "status": "delivered",
                "attempts": 1,
                "unknown_outcomes": 0,
                "created_at": at - timedelta(minutes=1),
            }
        )
        for kind in kinds:
            interactions.append(
                {
                    "scope": app_id,
                    "event_id": f"{tracking_id}:{kind}",
                    "tracking_id": tracking_id,
                    "kind": kind,
                    "status": "matched",
                    "app_id": app_id,
                    "profile_id": profile_id,
                    "node_id": "push",
                    "source": "seed",
                    "details": {},
                    "occurred_at": at,
                    "received_at": at,
                    # nothing for the forwarder to carry
                    "forwarded_at": utcnow(),
                    "forward_attempts": 0,
                    "forward_failures": 0,
                }
            )
    async with db.write() as session:
        if deliveries:
            await session.exec(insert(Delivery), params=deliveries)
        if interactions:
            await session.exec(insert(Interaction), params=interactions)


async def forget_opens(db: Database, profile_ids: list[str]) -> None:
    """Remove the opens ``seed_opens`` gave these profiles (a test seeding them anew for
    another hour starts from none)."""
    async with db.write() as session:
        await session.exec(
            delete(Interaction)
            .where(col(Interaction.source) == "seed")
            .where(col(Interaction.profile_id).in_(profile_ids))
        )
        await session.exec(
            delete(Delivery)
            .where(col(Delivery.run_id) == "seeded")
            .where(col(Delivery.profile_id).in_(profile_ids))
        )
