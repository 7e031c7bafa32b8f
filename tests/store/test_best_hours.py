"""The best hours read from the store, on SQLite and PostgreSQL: a profile's own histogram in
its zone, the decay of old opens, the minimum of opens, the app's histogram as the fallback,
the default hour, and what does not count (another app's opens, opens past the lookback, an
open and a click of one push counted twice)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.store.opens import seed_opens, seed_profile
from tidings.journeys.best_hour import HourChoice, HourSource
from tidings.store.best_hours import app_histogram, choose_best_hours, profile_opens
from tidings.store.db import Database

APP = "app"
NOW = datetime(2026, 6, 10, 7, 20, tzinfo=UTC)
DAY = timedelta(hours=24)


def at(hour_utc: int, days_ago: float) -> datetime:
    """An instant at ``hour_utc``:05 UTC, ``days_ago`` days before NOW's date."""
    return datetime(2026, 6, 10, hour_utc, 5, tzinfo=UTC) - timedelta(days=days_ago)


async def choose(db: Database, zones: dict[str, str], **overrides: object) -> dict[str, HourChoice]:
    arguments: dict[str, object] = {
        "app_id": APP,
        "zones": zones,
        "fallback_zone": "UTC",
        "now": NOW,
        "within": DAY,
        "default_hour": 10,
    } | overrides
    async with db.read() as session:
        return await choose_best_hours(session, **arguments)  # type: ignore[arg-type]


async def test_a_profiles_own_opens_choose_its_local_hour(db: Database) -> None:
    await seed_profile(db, "ana", "Asia/Tokyo")
    await seed_opens(db, APP, "ana", [at(10, d) for d in range(1, 7)])  # 19:05 in Tokyo
    await seed_opens(db, APP, "ana", [at(2, 3)])  # once at 11:05 Tokyo
    chosen = await choose(db, {"ana": "Asia/Tokyo"})
    assert chosen == {"ana": HourChoice(19, HourSource.PROFILE)}


async def test_recent_opens_outweigh_more_numerous_older_ones(db: Database) -> None:
    await seed_profile(db, "bob", None)
    await seed_opens(db, APP, "bob", [at(8, 70 + d) for d in range(8)])  # 8 opens, 10 weeks ago
    await seed_opens(db, APP, "bob", [at(21, d) for d in (1, 2, 3)])  # 3 opens this week
    assert (await choose(db, {"bob": "UTC"}))["bob"] == HourChoice(21, HourSource.PROFILE)
    # without the recent ones, the old ones decide
    await seed_profile(db, "old", None)
    await seed_opens(db, APP, "old", [at(8, 70 + d) for d in range(8)])
    assert (await choose(db, {"old": "UTC"}))["old"] == HourChoice(8, HourSource.PROFILE)


async def test_five_opens_make_a_profiles_histogram_trusted(db: Database) -> None:
    for profile_id in ("four", "five"):
        await seed_profile(db, profile_id, None)
    await seed_opens(db, APP, "four", [at(15, d) for d in range(1, 5)])
    await seed_opens(db, APP, "five", [at(15, d) for d in range(1, 6)])
    chosen = await choose(db, {"four": "UTC", "five": "UTC"})
    assert chosen["five"] == HourChoice(15, HourSource.PROFILE)
    # the app has 9 opens: under its 20, so the default decides for "four"
    assert chosen["four"] == HourChoice(10, HourSource.DEFAULT)


async def test_the_apps_hour_for_profiles_with_too_few_opens(db: Database) -> None:
    # 24 opens across the app at 18:xx in each opener's own zone
    for n, zone in enumerate(["Europe/Paris", "America/New_York", None]):
        profile_id = f"opener-{n}"
        await seed_profile(db, profile_id, zone)
        offset = {"Europe/Paris": -2, "America/New_York": 4, None: 0}[zone]
        await seed_opens(db, APP, profile_id, [at(18 + offset, d) for d in range(1, 9)])
    await seed_profile(db, "new", "Europe/Paris")
    await seed_profile(db, "few", "Europe/Paris")
    await seed_opens(db, APP, "few", [at(5, 1), at(5, 2)])
    chosen = await choose(db, {"new": "Europe/Paris", "few": "Europe/Paris"})
    assert chosen == {
        "new": HourChoice(18, HourSource.APP),
        "few": HourChoice(18, HourSource.APP),
    }
    async with db.read() as session:
        app = await app_histogram(session, APP, "UTC", NOW)
    assert app.opens == 26
    assert max(range(24), key=lambda h: app.weights[h]) == 18


async def test_the_default_hour_for_a_new_app_and_its_nearest_hour_in_a_short_window(
    db: Database,
) -> None:
    await seed_profile(db, "cyd", "UTC")
    chosen = await choose(db, {"cyd": "UTC"}, default_hour=11)
    assert chosen == {"cyd": HourChoice(11, HourSource.DEFAULT)}
    # NOW is 07:20 UTC: a 2-hour window reaches 07, 08 and 09; 09 is nearest to 11
    short = await choose(db, {"cyd": "UTC"}, default_hour=11, within=timedelta(hours=2))
    assert short == {"cyd": HourChoice(9, HourSource.DEFAULT)}


async def test_what_does_not_count(db: Database) -> None:
    await seed_profile(db, "dan", None)
    # another app's opens, and opens past the 90-day lookback
    await seed_opens(db, "other-app", "dan", [at(12, d) for d in range(1, 10)])
    await seed_opens(db, APP, "dan", [at(13, 91 + d) for d in range(10)])
    assert (await choose(db, {"dan": "UTC"}))["dan"].source is HourSource.DEFAULT
    # an open and a click of the same push are one open
    await seed_opens(db, APP, "dan", [at(14, d) for d in range(1, 4)], kinds=("opened", "clicked"))
    async with db.read() as session:
        opens = await profile_opens(session, APP, ["dan"], NOW - timedelta(days=90))
    assert len(opens) == 3
    # a click alone is an open
    await seed_opens(db, APP, "dan", [at(14, d) for d in (4, 5)], kinds=("clicked",))
    assert (await choose(db, {"dan": "UTC"}))["dan"] == HourChoice(14, HourSource.PROFILE)


async def test_one_query_serves_many_profiles(db: Database) -> None:
    zones = {}
    for n in range(40):
        profile_id = f"p{n}"
        await seed_profile(db, profile_id, None)
        await seed_opens(db, APP, profile_id, [at(n % 24, d) for d in range(1, 6)])
        zones[profile_id] = "UTC"
    chosen = await choose(db, zones)
    assert {pid: c.hour for pid, c in chosen.items()} == {f"p{n}": n % 24 for n in range(40)}
    assert {c.source for c in chosen.values()} == {HourSource.PROFILE}
