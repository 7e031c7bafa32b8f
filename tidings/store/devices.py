"""Device registration: an idempotent upsert on (app, token)."""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import insert_for
from tidings.store.models import Device, DeviceState, Profile, Provider

APNS_TOKEN = re.compile(r"^(?:[0-9a-fA-F]{2}){32,100}$")
FCM_TOKEN_MAX_BYTES = 4096


class InvalidToken(ValueError):
    pass


def check_token(provider: Provider, token: str) -> str:
    """APNs tokens are even-length hex of 64 to 200 characters (stored lower-case); FCM
    tokens are opaque: non-empty, no whitespace, at most 4 KB."""
    if provider is Provider.APNS:
        if not APNS_TOKEN.match(token):
            raise InvalidToken("an APNs token is even-length hex, 64 to 200 characters")
        return token.lower()
    if not token or any(ch.isspace() for ch in token):
        raise InvalidToken("an FCM token is non-empty and has no whitespace")
    if len(token.encode()) > FCM_TOKEN_MAX_BYTES:
        raise InvalidToken("an FCM token is at most 4096 bytes")
    return token


async def ensure_profile(session: AsyncSession, profile_id: str, now: datetime) -> None:
    await session.exec(
        insert_for(session, Profile)
        .values(id=profile_id, attributes={}, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["id"])
    )


async def register_device(
    session: AsyncSession,
    *,
    app_id: str,
    profile_id: str,
    provider: Provider,
    token: str,
    environment: str | None,
    now: datetime,
) -> Device:
    """Insert or refresh the device. A token registered to another profile moves to this one
    (one device never gets a push twice); registering revives an invalid or quarantined
    token and resets its staleness clock."""
    token = check_token(provider, token)
    await ensure_profile(session, profile_id, now)
    statement = insert_for(session, Device).values(
        app_id=app_id,
        profile_id=profile_id,
        provider=provider.value,
        token=token,
        environment=environment,
        state=DeviceState.VALID.value,
        registered_at=now,
        created_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["app_id", "token"],
        set_={
            "profile_id": statement.excluded.profile_id,
            "provider": statement.excluded.provider,
            "environment": statement.excluded.environment,
            "state": DeviceState.VALID.value,
            "state_reason": None,
            "state_changed_at": None,
            "registered_at": statement.excluded.registered_at,
        },
    )
    await session.exec(statement)
    device = (
        await session.exec(
            select(Device).where(col(Device.app_id) == app_id).where(col(Device.token) == token)
        )
    ).one()
    return device
