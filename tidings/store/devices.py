"""Devices: registration (an idempotent upsert on (app, token)), refresh, cleanup, listing.

A token is unique per app. Registering it for another profile moves it there, so one device
never receives a push twice through two profiles.

A device's profile must exist: registering never creates one by itself. A caller that asks
for it creates the missing profiles first (:func:`create_missing_profiles`).

Writes that touch several rows take their locks in one global order, so concurrent requests
never deadlock on PostgreSQL: first every profile they create (one statement, in id order),
then every device (in app and token order).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import insert_for
from tidings.store.models import Device, DeviceState, Profile, Provider, ReplacedToken
from tidings.store.pages import Page, keyset

APNS_TOKEN = re.compile(r"^(?:[0-9a-fA-F]{2}){32,100}$")
APNS_TOKEN_MAX_CHARS = 200
FCM_TOKEN_MAX_BYTES = 4096


class InvalidToken(ValueError):
    """A token that cannot be a provider's token; ``too_long`` tells length apart from form."""

    def __init__(self, message: str, *, too_long: bool = False) -> None:
        super().__init__(message)
        self.too_long = too_long


def check_token(provider: Provider, token: str) -> str:
    """APNs tokens are even-length hex of 64 to 200 characters (stored lower-case); FCM
    tokens are opaque: non-empty, no whitespace, at most 4 KB."""
    if provider is Provider.APNS:
        if len(token) > APNS_TOKEN_MAX_CHARS:
            raise InvalidToken(
                "an APNs token is even-length hex, 64 to 200 characters", too_long=True
            )
        if not APNS_TOKEN.match(token):
            raise InvalidToken("an APNs token is even-length hex, 64 to 200 characters")
        return token.lower()
    if not token or any(ch.isspace() for ch in token):
        raise InvalidToken("an FCM token is non-empty and has no whitespace")
    if len(token.encode("utf-8", "surrogatepass")) > FCM_TOKEN_MAX_BYTES:
        raise InvalidToken("an FCM token is at most 4096 bytes", too_long=True)
    return token


def token_variants(token: str) -> list[str]:
    """The forms a token may be stored in: APNs tokens are stored lower-case."""
    return list(dict.fromkeys([token, token.lower()]))


async def existing_profiles(session: AsyncSession, profile_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(profile_ids))
    if not ids:
        return set()
    found = await session.exec(select(col(Profile.id)).where(col(Profile.id).in_(ids)))
    return set(found.all())


async def create_missing_profiles(
    session: AsyncSession, profile_ids: Iterable[str], now: datetime
) -> None:
    """Create (empty) the profiles that do not exist yet, for a caller that asked for it, in
    one statement and in id order: two
    transactions creating overlapping sets then wait for each other in the same order, where
    one-by-one inserts in request order deadlock on PostgreSQL."""
    ids = sorted(set(profile_ids))
    if not ids:
        return
    await session.exec(
        insert_for(session, Profile)
        .values([{"id": i, "attributes": {}, "created_at": now, "updated_at": now} for i in ids])
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
    token and resets its staleness clock.

    One ``INSERT ... ON CONFLICT DO UPDATE``: concurrent registrations of the same token end
    with one row on both backends (SQLite serialises writers; PostgreSQL's upsert waits for
    the other transaction instead of failing). The profile must exist."""
    token = check_token(provider, token)
    return await _upsert(
        session,
        Registration(app_id, profile_id, provider, token, environment),
        now,
    )


@dataclass(frozen=True)
class Registration:
    """One device to register; ``token`` already checked (:func:`check_token`)."""

    app_id: str
    profile_id: str
    provider: Provider
    token: str
    environment: str | None = None

    @property
    def lock_order(self) -> tuple[str, str]:
        return self.app_id, self.token


async def register_devices(
    session: AsyncSession, registrations: Sequence[Registration], now: datetime
) -> list[Device | None]:
    """Register a batch in the global lock order (devices by app and token, after any profiles
    the caller created), each device in a savepoint of its own. Answers per item, in the
    given order: the device, or None when the store refused that item (its profile is gone,
    say; the others are kept). A token given twice ends with the later item's profile."""
    devices: list[Device | None] = [None] * len(registrations)
    # sorted() is stable: a token given twice is written in request order
    for index in sorted(range(len(registrations)), key=lambda i: registrations[i].lock_order):
        try:
            async with session.begin_nested():
                devices[index] = await _upsert(session, registrations[index], now)
        except IntegrityError:
            devices[index] = None
    return devices


async def _upsert(session: AsyncSession, registration: Registration, now: datetime) -> Device:
    statement = insert_for(session, Device).values(
        app_id=registration.app_id,
        profile_id=registration.profile_id,
        provider=registration.provider.value,
        token=registration.token,
        environment=registration.environment,
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
    return await _by_token(session, registration.app_id, registration.token)


async def _by_token(session: AsyncSession, app_id: str, token: str) -> Device:
    device = (
        await session.exec(
            select(Device)
            .where(col(Device.app_id) == app_id)
            .where(col(Device.token) == token)
            .execution_options(populate_existing=True)
        )
    ).one()
    return device


async def find_device(session: AsyncSession, app_id: str, token: str) -> Device | None:
    """The app's device with this token, in whatever case the app sends an APNs token."""
    return (
        await session.exec(
            select(Device)
            .where(col(Device.app_id) == app_id)
            .where(col(Device.token).in_(token_variants(token)))
        )
    ).first()


class TokenNotRegistered(LookupError):
    pass


# How long a replaced token is still recognised as the one a push went to: far longer than
# any push waits to be opened.
REPLACED_TOKEN_KEPT = timedelta(days=90)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def _lock_in_token_order(session: AsyncSession, app_id: str, tokens: list[str]) -> None:
    """Lock the app's rows of these tokens in token order (PostgreSQL; SQLite has one writer
    and no row locks), the order batches take them in."""
    if session.bind is None or session.bind.dialect.name != "postgresql":
        return
    await session.exec(
        select(col(Device.id))
        .where(col(Device.app_id) == app_id)
        .where(col(Device.token).in_(tokens))
        .order_by(col(Device.token))
        .with_for_update()
    )


async def refresh_token(
    session: AsyncSession, *, app_id: str, old_token: str, new_token: str, now: datetime
) -> Device:
    """Replace a device's token by the one the provider issued in its place. The device keeps
    its profile; if the new token was registered already, that row becomes the device. The
    old token is remembered (as a digest) for reports about pushes sent to it."""
    await _lock_in_token_order(
        session, app_id, sorted({*token_variants(old_token), *token_variants(new_token)})
    )
    device = await find_device(session, app_id, old_token)
    if device is None:
        raise TokenNotRegistered(old_token)
    provider = Provider(device.provider)
    new_token = check_token(provider, new_token)
    if new_token == device.token:
        return await register_device(
            session,
            app_id=app_id,
            profile_id=device.profile_id,
            provider=provider,
            token=new_token,
            environment=device.environment,
            now=now,
        )
    existing = await find_device(session, app_id, new_token)
    if existing is not None:
        await session.exec(delete(Device).where(col(Device.id) == device.id))
        return await register_device(
            session,
            app_id=app_id,
            profile_id=device.profile_id,
            provider=provider,
            token=new_token,
            environment=device.environment,
            now=now,
        )
    await _remember_replaced(session, int(device.id or 0), device.token, now)
    device.token = new_token
    device.state = DeviceState.VALID
    device.state_reason = None
    device.state_changed_at = None
    device.registered_at = now
    session.add(device)
    await session.flush()
    return device


async def _remember_replaced(
    session: AsyncSession, device_id: int, token: str, now: datetime
) -> None:
    await session.exec(
        delete(ReplacedToken)
        .where(col(ReplacedToken.device_id) == device_id)
        .where(col(ReplacedToken.replaced_at) < now - REPLACED_TOKEN_KEPT)
    )
    session.add(
        ReplacedToken(device_id=device_id, token_digest=token_digest(token), replaced_at=now)
    )


async def had_token_after(
    session: AsyncSession, device: Device, token: str, since: datetime
) -> bool:
    """Whether the device held this token (in any case the app sends it) at ``since`` or
    later: its current token, or one replaced since."""
    variants = token_variants(token)
    if device.token in variants:
        return True
    replaced = await session.exec(
        select(col(ReplacedToken.id))
        .where(col(ReplacedToken.device_id) == device.id)
        .where(col(ReplacedToken.token_digest).in_([token_digest(v) for v in variants]))
        .where(col(ReplacedToken.replaced_at) >= since)
        .limit(1)
    )
    return replaced.first() is not None


async def remove_device(session: AsyncSession, app_id: str, device_id: int) -> bool:
    result = await session.exec(
        delete(Device).where(col(Device.app_id) == app_id).where(col(Device.id) == device_id)
    )
    return bool(getattr(result, "rowcount", 0))


async def clean_up(
    session: AsyncSession, *, app_id: str, profile_id: str, token: str | None
) -> int:
    """Remove one of the profile's devices for the app (by token), or all of them. A token
    that has moved to another profile is that profile's now and is left alone."""
    statement = (
        delete(Device)
        .where(col(Device.app_id) == app_id)
        .where(col(Device.profile_id) == profile_id)
    )
    if token is not None:
        statement = statement.where(col(Device.token).in_(token_variants(token)))
    result = await session.exec(statement)
    return int(getattr(result, "rowcount", 0) or 0)


class ListedState(StrEnum):
    """A device's state as the API shows it: stale is a valid token not refreshed for
    ``stale_after_days`` (not targeted, revived by registering it again)."""

    VALID = "valid"
    INVALID = "invalid"
    QUARANTINED = "quarantined"
    STALE = "stale"


@dataclass(frozen=True)
class DeviceView:
    device: Device
    state: ListedState
    reason: str | None
    since: datetime | None


def view_of(device: Device, stale_after: timedelta, now: datetime) -> DeviceView:
    state = DeviceState(device.state)
    if state is DeviceState.VALID and device.registered_at < now - stale_after:
        return DeviceView(
            device,
            ListedState.STALE,
            f"not refreshed for {stale_after.days} days",
            device.registered_at + stale_after,
        )
    return DeviceView(
        device, ListedState(state.value), device.state_reason, device.state_changed_at
    )


async def list_devices(
    session: AsyncSession,
    *,
    app_id: str,
    profile_id: str | None,
    state: ListedState | None,
    stale_after: timedelta,
    now: datetime,
    after: int | None,
    limit: int,
) -> Page[DeviceView]:
    """The app's devices (of one profile, or all), in id order."""
    statement = select(Device).where(col(Device.app_id) == app_id)
    if profile_id is not None:
        statement = statement.where(col(Device.profile_id) == profile_id)
    cutoff = now - stale_after
    if state is ListedState.STALE:
        statement = statement.where(
            and_(col(Device.state) == DeviceState.VALID.value, col(Device.registered_at) < cutoff)
        )
    elif state is ListedState.VALID:
        statement = statement.where(
            and_(col(Device.state) == DeviceState.VALID.value, col(Device.registered_at) >= cutoff)
        )
    elif state is not None:
        statement = statement.where(col(Device.state) == state.value)
    page = await keyset(session, statement, col(Device.id), after, limit)
    return Page(
        [view_of(device, stale_after, now) for device in page.items],
        page.next_after,
    )
