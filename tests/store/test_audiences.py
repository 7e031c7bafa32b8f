"""Who a push goes to (tidings.store.targeting) and the devices behind it
(tidings.store.devices), queried on SQLite and PostgreSQL: real rows, real results."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tidings.store.db import Database
from tidings.store.devices import (
    InvalidToken,
    ListedState,
    Registration,
    clean_up,
    create_missing_profiles,
    find_device,
    list_devices,
    register_device,
    register_devices,
)
from tidings.store.models import App, Device, DeviceState, Provider
from tidings.store.targeting import invalidate_gone, quarantine, resolve_targets, stale_cutoff
from tidings.store.types import utcnow

STALE_AFTER = timedelta(days=60)


def apns(n: int) -> str:
    return f"{n:064x}"


async def with_apps(db: Database, *app_ids: str) -> None:
    async with db.write() as session:
        for app_id in app_ids:
            session.add(App(id=app_id, name=app_id))


async def register(
    db: Database, app_id: str, profile_id: str, token: str, *, now: datetime | None = None
) -> Device:
    provider = Provider.APNS if not token.startswith("fcm") else Provider.FCM
    async with db.write() as session:
        # a device names a profile that exists: registration creates none
        await create_missing_profiles(session, [profile_id], now or utcnow())
        return await register_device(
            session,
            app_id=app_id,
            profile_id=profile_id,
            provider=provider,
            token=token,
            environment=None,
            now=now or utcnow(),
        )


async def targets_of(db: Database, app_id: str, profiles: list[str], now: datetime) -> list[str]:
    async with db.read() as session:
        audience = await resolve_targets(
            session, app_id, profiles, fresh_since=stale_cutoff(now, STALE_AFTER.days)
        )
    return [t.token for t in audience.targets]


async def test_an_empty_audience_resolves_to_no_targets_and_no_profiles(db: Database) -> None:
    await with_apps(db, "app")
    async with db.read() as session:
        audience = await resolve_targets(session, "app", [], fresh_since=utcnow())
        unknown = await resolve_targets(session, "app", ["nobody"], fresh_since=utcnow())
    assert (audience.targets, audience.profiles) == ([], {})
    assert (unknown.targets, unknown.profiles) == ([], {})


async def test_targets_are_the_valid_fresh_devices_of_the_app_in_profile_order(
    db: Database,
) -> None:
    await with_apps(db, "app", "other")
    now = utcnow()
    await register(db, "app", "bob", apns(2), now=now)
    await register(db, "app", "ann", apns(1), now=now)
    await register(db, "app", "ann", "fcm-ann-1", now=now)
    await register(db, "other", "ann", apns(3), now=now)  # another app's device
    gone = await register(db, "app", "bob", apns(4), now=now)
    doubted = await register(db, "app", "bob", apns(5), now=now)
    await register(db, "app", "cy", apns(6), now=now - STALE_AFTER - timedelta(days=1))
    async with db.write() as session:
        assert await invalidate_gone(session, gone.id or 0, now, "Unregistered", now)
        assert await quarantine(session, doubted.id or 0, "BadDeviceToken", now)

    # ann's two devices (in id order), then bob's one valid device; cy's is stale
    assert await targets_of(db, "app", ["cy", "bob", "ann", "ann"], now) == [
        apns(1),
        "fcm-ann-1",
        apns(2),
    ]
    async with db.read() as session:
        audience = await resolve_targets(
            session, "app", ["bob", "ann", "cy"], fresh_since=stale_cutoff(now, 60)
        )
    # every profile asked for renders, even one with no device to send to
    assert set(audience.profiles) == {"ann", "bob", "cy"}
    assert audience.profiles["ann"]["attributes"] == {}


async def test_an_audience_larger_than_one_query_keeps_every_target_once(db: Database) -> None:
    await with_apps(db, "app")
    now = utcnow()
    registrations = [Registration("app", f"p{n:04d}", Provider.APNS, apns(n)) for n in range(1000)]
    async with db.write() as session:
        await create_missing_profiles(session, [r.profile_id for r in registrations], now)
        await register_devices(session, registrations, now)
    profiles = [f"p{n:04d}" for n in range(1000)] * 2  # every profile named twice
    tokens = await targets_of(db, "app", profiles, now)
    assert len(tokens) == 1000
    assert len(set(tokens)) == 1000


async def test_a_gone_token_is_invalidated_once_and_not_after_it_was_registered_again(
    db: Database,
) -> None:
    await with_apps(db, "app")
    then = utcnow() - timedelta(minutes=10)
    device = await register(db, "app", "ann", apns(1), now=then)
    now = utcnow()
    async with db.write() as session:
        # the app registered the token again after the push it was reported gone for
        assert not await invalidate_gone(session, device.id or 0, then - timedelta(1), "x", now)
        assert await invalidate_gone(session, device.id or 0, now, "Unregistered", now)
        assert not await invalidate_gone(session, device.id or 0, now, "Unregistered", now)
        assert not await quarantine(session, device.id or 0, "late doubt", now)
    assert await targets_of(db, "app", ["ann"], now) == []
    # registering it anew revives it
    revived = await register(db, "app", "ann", apns(1))
    assert revived.id == device.id
    assert revived.state == DeviceState.VALID
    assert revived.state_reason is None
    assert await targets_of(db, "app", ["ann"], utcnow()) == [apns(1)]


async def test_registering_is_idempotent_and_a_token_moves_to_its_latest_profile(
    db: Database,
) -> None:
    await with_apps(db, "app")
    first = await register(db, "app", "ann", apns(7).upper())
    again = await register(db, "app", "ann", apns(7))
    moved = await register(db, "app", "bob", apns(7))
    assert first.id == again.id == moved.id
    assert first.token == apns(7)  # APNs tokens are stored lower-case
    now = utcnow()
    assert await targets_of(db, "app", ["ann"], now) == []
    assert await targets_of(db, "app", ["bob"], now) == [apns(7)]
    async with db.read() as session:
        found = await find_device(session, "app", apns(7).upper())
    assert found is not None
    assert found.profile_id == "bob"


@pytest.mark.parametrize(
    ("provider", "token"),
    [
        (Provider.APNS, "not-hex"),
        (Provider.APNS, "ab" * 31),  # 62 characters: too short
        (Provider.APNS, "a" * 65),  # odd length
        (Provider.FCM, ""),
        (Provider.FCM, "has space"),
    ],
)
async def test_an_invalid_token_is_refused_and_never_stored(
    db: Database, provider: Provider, token: str
) -> None:
    await with_apps(db, "app")
    with pytest.raises(InvalidToken):
        async with db.write() as session:
            await register_device(
                session,
                app_id="app",
                profile_id="ann",
                provider=provider,
                token=token,
                environment=None,
                now=utcnow(),
            )
    assert await targets_of(db, "app", ["ann"], utcnow()) == []


async def test_a_batch_answers_per_item_and_a_token_given_twice_ends_with_the_later_profile(
    db: Database,
) -> None:
    await with_apps(db, "app")
    batch = [
        Registration("app", "ann", Provider.APNS, apns(1)),
        Registration("nope", "bob", Provider.APNS, apns(2)),  # no such app: refused alone
        Registration("app", "cy", Provider.APNS, apns(1)),
    ]
    async with db.write() as session:
        await create_missing_profiles(session, ["ann", "bob", "cy"], utcnow())
        answers = await register_devices(session, batch, utcnow())
    assert answers[1] is None
    assert answers[0] is not None
    assert answers[2] is not None
    assert answers[0].id == answers[2].id
    assert await targets_of(db, "app", ["ann", "bob", "cy"], utcnow()) == [apns(1)]
    async with db.read() as session:
        audience = await resolve_targets(session, "app", ["cy"], fresh_since=utcnow() - STALE_AFTER)
    assert [t.profile_id for t in audience.targets] == ["cy"]


async def test_listing_pages_in_id_order_and_filters_by_state(db: Database) -> None:
    await with_apps(db, "app")
    now = utcnow()
    ids = [(await register(db, "app", f"p{n}", apns(n), now=now)).id or 0 for n in range(1, 8)]
    async with db.write() as session:
        await quarantine(session, ids[0], "BadDeviceToken", now)
        await invalidate_gone(session, ids[1], now, "Unregistered", now)
    await register(db, "app", "p9", apns(9), now=now - STALE_AFTER - timedelta(days=1))

    async def listed(
        state: ListedState | None, after: int | None, limit: int
    ) -> tuple[list[int], int | None]:
        async with db.read() as session:
            page = await list_devices(
                session,
                app_id="app",
                profile_id=None,
                state=state,
                stale_after=STALE_AFTER,
                now=now,
                after=after,
                limit=limit,
            )
        return [v.device.id or 0 for v in page.items], page.next_after

    seen: list[int] = []
    after: int | None = None
    pages = 0
    while True:
        items, after = await listed(None, after, 3)
        seen += items
        pages += 1
        if after is None:
            break
    assert pages == 3  # 8 devices, 3 a page: the last page is never empty
    assert seen == sorted(seen)
    assert len(seen) == 8
    assert (await listed(ListedState.VALID, None, 100))[0] == ids[2:]
    assert len((await listed(ListedState.STALE, None, 100))[0]) == 1
    assert (await listed(ListedState.QUARANTINED, None, 100))[0] == [ids[0]]
    assert (await listed(ListedState.INVALID, None, 100))[0] == [ids[1]]
    # exactly a page's worth: no pointer to an empty page
    assert (await listed(ListedState.VALID, None, 5)) == (ids[2:], None)


async def test_clean_up_removes_the_profiles_devices_but_not_a_token_that_moved_away(
    db: Database,
) -> None:
    await with_apps(db, "app")
    await register(db, "app", "ann", apns(1))
    await register(db, "app", "ann", apns(2))
    await register(db, "app", "ann", apns(3))
    await register(db, "app", "bob", apns(3))  # moved to bob
    async with db.write() as session:
        assert await clean_up(session, app_id="app", profile_id="ann", token=apns(1).upper()) == 1
        assert await clean_up(session, app_id="app", profile_id="ann", token=apns(3)) == 0
        assert await clean_up(session, app_id="app", profile_id="ann", token=None) == 1
        assert await clean_up(session, app_id="app", profile_id="ann", token=None) == 0
    now = utcnow()
    assert await targets_of(db, "app", ["ann", "bob"], now) == [apns(3)]
