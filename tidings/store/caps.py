"""The frequency cap: pushes delivered to a profile, across all journeys, over rolling
24 h / 7 d / 30 d windows, counted from the send ledger.

A push is one send of one node to one profile (one workflow, node and visit), however many
of the profile's devices it reached. The batch being planned is never counted against
itself, so a retried delivery attempt caps exactly the profiles its first attempt capped.
Two journeys sending to one profile at the same instant may both pass the check: the cap is
a policy on what the ledger already holds, not a lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import String, cast, func, type_coerce
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from activities.contracts import FrequencyCap
from tidings.store.models import Delivery, DeliveryStatus
from tidings.store.types import UTCDateTime

CHUNK = 900  # SQLite's bound-parameter budget
WINDOWS = (
    ("per_24h", timedelta(hours=24), "24h"),
    ("per_7d", timedelta(days=7), "7d"),
    ("per_30d", timedelta(days=30), "30d"),
)


async def capped_profiles(
    session: AsyncSession,
    cap: FrequencyCap,
    visits: Mapping[str, int],
    *,
    workflow_id: str,
    node_id: str,
    now: datetime,
) -> dict[str, str]:
    """The profiles (of ``visits``: profile id -> this node's visit) the cap holds back,
    each with its reason (the shortest window it hits): one query per 900 profiles."""
    windows = [
        (limit, span, label)
        for name, span, label in WINDOWS
        if (limit := getattr(cap, name)) is not None
    ]
    if not windows or not visits:
        return {}
    since = now - max(span for _, span, _ in windows)
    pushes: dict[str, list[datetime]] = {}
    ids = list(visits)
    # one push: a workflow's send of a node at one visit, whatever devices it reached
    push = (
        col(Delivery.workflow_id)
        + ":"
        + col(Delivery.node_id)
        + ":"
        + cast(col(Delivery.visit), String)
    )
    first_sent = type_coerce(func.min(col(Delivery.created_at)), UTCDateTime())
    for start in range(0, len(ids), CHUNK):
        result = await session.exec(
            select(col(Delivery.profile_id), push, first_sent)
            .where(col(Delivery.profile_id).in_(ids[start : start + CHUNK]))
            .where(col(Delivery.status) == DeliveryStatus.DELIVERED.value)
            .where(col(Delivery.created_at) >= since)
            .group_by(col(Delivery.profile_id), push)
        )
        for profile_id, push_key, sent_at in result.all():
            if push_key == f"{workflow_id}:{node_id}:{visits[profile_id]}":
                continue  # this very send, delivered to some devices by an earlier attempt
            pushes.setdefault(profile_id, []).append(sent_at)
    capped: dict[str, str] = {}
    for profile_id, times in pushes.items():
        for limit, span, label in windows:
            count = sum(1 for sent in times if sent >= now - span)
            if count >= limit:
                capped[profile_id] = f"frequency cap: {count} pushes in {label} (limit {limit})"
                break
    return capped
