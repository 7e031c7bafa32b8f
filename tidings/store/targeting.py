"""Which devices a push goes to: every valid, fresh token of the profile for the app."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select as select_columns
from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import one_of
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
    # plain rows, not ORM instances: a batch reads a thousand profiles and their devices
    connection = await session.connection()
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        profiles = await connection.execute(
            select_columns(
                col(Profile.id),
                col(Profile.email),
                col(Profile.locale),
                col(Profile.timezone),
                col(Profile.attributes),
            ).where(one_of(session, col(Profile.id), chunk))
        )
        for profile_id, email, locale, timezone, attributes in profiles.all():
            audience.profiles[profile_id] = {
                "id": profile_id,
                "email": email,
                "locale": locale,
                "timezone": timezone,
                "attributes": attributes or {},
            }
        devices = await connection.execute(
            select_columns(
                col(Device.id),
                col(Device.profile_id),
                col(Device.provider),
                col(Device.token),
                col(Device.environment),
            )
            .where(col(Device.app_id) == app_id)
            .where(one_of(session, col(Device.profile_id), chunk))
            .where(col(Device.state) == DeviceState.VALID.value)
            .where(col(Device.registered_at) >= fresh_since)
            .order_by(col(Device.profile_id), col(Device.id))
        )
        audience.targets.extend(
            Target(int(device_id or 0), profile_id, provider, token, environment)
            for device_id, profile_id, provider, token, environment in devices.all()
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
