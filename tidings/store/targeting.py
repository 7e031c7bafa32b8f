"""Which devices a push goes to: every valid, fresh token of the profile for the app."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.models import Device, DeviceState, Profile


@dataclass(frozen=True, slots=True)
class Target:
    device_id: int
    profile_id: str
    provider: str
    token: str
    environment: str | None


@dataclass
class Audience:
    """The targets of one batch, and the profile data templates render against."""

    targets: list[Target] = field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)


async def resolve_targets(
    session: AsyncSession,
    app_id: str,
    profile_ids: Sequence[str],
    *,
    fresh_since: datetime,
) -> Audience:
    """One query per 900 profiles (SQLite's bound-parameter budget)."""
    audience = Audience()
    ids = list(dict.fromkeys(profile_ids))
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        profiles = await session.exec(select(Profile).where(col(Profile.id).in_(chunk)))
        for profile in profiles.all():
            audience.profiles[profile.id] = {
                "id": profile.id,
                "email": profile.email,
                "locale": profile.locale,
                "timezone": profile.timezone,
                "attributes": profile.attributes or {},
            }
        devices = await session.exec(
            select(Device)
            .where(col(Device.app_id) == app_id)
            .where(col(Device.profile_id).in_(chunk))
            .where(col(Device.state) == DeviceState.VALID.value)
            .where(col(Device.registered_at) >= fresh_since)
            .order_by(col(Device.profile_id), col(Device.id))
        )
        audience.targets.extend(
            Target(int(d.id or 0), d.profile_id, d.provider, d.token, d.environment)
            for d in devices.all()
        )
    return audience


def stale_cutoff(now: datetime, stale_after_days: int) -> datetime:
    return now - timedelta(days=stale_after_days)


async def invalidate_gone(
    session: AsyncSession, device_id: int, gone_at: datetime, reason: str, now: datetime
) -> bool:
    """Invalidate a token the provider reports gone, in one atomic statement that leaves it
    alone if the app registered it again after ``gone_at`` (APNs 410 timestamp, or the time
    tidings sent the push)."""
    result = await session.exec(
        update(Device)
        .where(col(Device.id) == device_id)
        .where(col(Device.registered_at) <= gone_at)
        .where(col(Device.state) != DeviceState.INVALID.value)
        .values(
            state=DeviceState.INVALID.value,
            state_reason=reason,
            state_changed_at=now,
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def quarantine(session: AsyncSession, device_id: int, reason: str, now: datetime) -> bool:
    result = await session.exec(
        update(Device)
        .where(col(Device.id) == device_id)
        .where(col(Device.state) == DeviceState.VALID.value)
        .values(state=DeviceState.QUARANTINED.value, state_reason=reason, state_changed_at=now)
    )
    return bool(getattr(result, "rowcount", 0))
