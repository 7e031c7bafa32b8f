"""What the console's pages read from the store that no report gives yet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.models import (
    Delivery,
    DeliveryStatus,
    Device,
    DeviceState,
    Interaction,
    Journey,
    JourneyRun,
    JourneyVersion,
)
from tidings.store.reports import ATTEMPTED


async def journeys_with_runs(session: AsyncSession) -> list[dict[str, Any]]:
    journeys = (await session.exec(select(Journey).order_by(col(Journey.id)))).all()
    runs = await session.exec(
        select(col(JourneyRun.journey_id), func.count()).group_by(col(JourneyRun.journey_id))
    )
    counted = dict(runs.all())
    listed = [
        {
            "id": j.id,
            "name": j.name,
            "latest_version": j.latest_version,
            "runs": counted.get(j.id, 0),
        }
        for j in journeys
    ]
    stored = {j.id for j in journeys}
    listed += [
        {"id": journey_id, "name": "(started from a file)", "latest_version": None, "runs": count}
        for journey_id, count in sorted(counted.items())
        if journey_id not in stored
    ]
    return listed


async def versions_of(session: AsyncSession, journey_id: str) -> list[JourneyVersion]:
    found = await session.exec(
        select(JourneyVersion)
        .where(col(JourneyVersion.journey_id) == journey_id)
        .order_by(col(JourneyVersion.version).desc())
    )
    return list(found.all())


async def runs_of(session: AsyncSession, journey_id: str, limit: int = 50) -> list[JourneyRun]:
    found = await session.exec(
        select(JourneyRun)
        .where(col(JourneyRun.journey_id) == journey_id)
        .order_by(col(JourneyRun.started_at).desc())
        .limit(limit)
    )
    return list(found.all())


@dataclass
class Bucket:
    at: datetime
    sent: int = 0
    interactions: int = 0


async def activity_over_time(session: AsyncSession, run_id: str, buckets: int = 24) -> list[Bucket]:
    """Pushes handed to a provider (by when their answer came) and interactions with the run's
    pushes, in equal slices from the first to the last."""
    sent = await session.exec(
        select(col(Delivery.completed_at))
        .where(col(Delivery.run_id) == run_id)
        .where(col(Delivery.completed_at).is_not(None))
    )
    sent_times = [t for t in sent.all() if t is not None]
    touched = await session.exec(
        select(col(Interaction.occurred_at))
        .join(Delivery, col(Delivery.id) == col(Interaction.delivery_id))
        .where(col(Delivery.run_id) == run_id)
    )
    touch_times = list(touched.all())
    every = sent_times + touch_times
    if not every:
        return []
    first, last = min(every), max(every)
    count = buckets if last > first else 1
    slices = [Bucket(first + (last - first) * i / count) for i in range(count)]

    def index(moment: datetime) -> int:
        if last == first:
            return 0
        return min(len(slices) - 1, int((moment - first) / (last - first) * len(slices)))

    for moment in sent_times:
        slices[index(moment)].sent += 1
    for moment in touch_times:
        slices[index(moment)].interactions += 1
    return slices


async def devices_of_profile(session: AsyncSession, profile_id: str) -> list[Device]:
    found = await session.exec(
        select(Device)
        .where(col(Device.profile_id) == profile_id)
        .order_by(col(Device.app_id), col(Device.id))
    )
    return list(found.all())


@dataclass
class TokenHealth:
    devices: int
    by_state: dict[str, int]
    sent: int
    token_gone: int

    @property
    def invalid_device_rate(self) -> float:
        return self.by_state.get(DeviceState.INVALID.value, 0) / self.devices if self.devices else 0

    @property
    def token_gone_rate(self) -> float:
        return self.token_gone / self.sent if self.sent else 0.0


async def token_health(session: AsyncSession, app_id: str) -> TokenHealth:
    states = await session.exec(
        select(col(Device.state), func.count())
        .where(col(Device.app_id) == app_id)
        .group_by(col(Device.state))
    )
    by_state = {str(state): int(count) for state, count in states.all()}
    answered = await session.exec(
        select(col(Delivery.status), func.count())
        .where(col(Delivery.app_id) == app_id)
        .where(col(Delivery.status).in_([status.value for status in ATTEMPTED]))
        .group_by(col(Delivery.status))
    )
    by_status = {str(s): int(c) for s, c in answered.all()}
    return TokenHealth(
        devices=sum(by_state.values()),
        by_state=by_state,
        sent=sum(by_status.values()),
        token_gone=by_status.get(DeliveryStatus.TOKEN_GONE.value, 0),
    )
