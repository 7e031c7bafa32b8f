"""The best_hour activity on SQLite and PostgreSQL: it answers each profile's hour and source,
and reads the app's histogram once an hour per app and zone (kept for at most a bounded number
of apps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from activities.best_hour import AppHistograms, BestHourActivities
from activities.contracts import BestHourRequest, ChosenHour
from tests.store.opens import seed_opens, seed_profile
from tidings.journeys.best_hour import HourHistogram
from tidings.store.db import Database

NOW = datetime(2026, 6, 10, 7, 20, tzinfo=UTC)


def request(now: datetime, *profiles: str) -> BestHourRequest:
    return BestHourRequest(
        app_id="app",
        now=now,
        within=timedelta(hours=24),
        default_hour=10,
        zones=dict.fromkeys(profiles, "UTC"),
        fallback_zone="UTC",
    )


async def test_the_apps_histogram_is_read_once_an_hour(db: Database) -> None:
    activity = BestHourActivities(db)
    await seed_profile(db, "new", None)
    first = await activity.choose(request(NOW, "new"))
    assert first.chosen == {"new": ChosenHour(10, "default")}
    # 25 opens at 16:xx arrive: the cached (empty) histogram still answers within the hour
    await seed_profile(db, "fan", None)
    opened = [NOW.replace(hour=16) - timedelta(days=d) for d in range(1, 26)]
    await seed_opens(db, "app", "fan", opened)
    soon = await activity.choose(request(NOW + timedelta(minutes=59), "new"))
    assert soon.chosen == {"new": ChosenHour(10, "default")}
    later = await activity.choose(request(NOW + timedelta(hours=1), "new"))
    assert later.chosen == {"new": ChosenHour(16, "app")}
    # a profile's own opens are read every time
    assert (await activity.choose(request(NOW, "fan"))).chosen == {"fan": ChosenHour(16, "profile")}


def test_the_cache_keeps_a_bounded_number_of_apps_for_a_while() -> None:
    cache = AppHistograms(ttl=timedelta(hours=1), kept=2)
    one, two, three = HourHistogram(), HourHistogram(), HourHistogram()
    cache.put("a", "UTC", NOW, one)
    cache.put("b", "UTC", NOW, two)
    assert cache.get("a", "UTC", NOW) is one  # "a" now the most recently used
    cache.put("c", "UTC", NOW, three)
    assert cache.get("b", "UTC", NOW) is None  # the least recently used went
    assert cache.get("a", "UTC", NOW) is one
    assert cache.get("a", "Asia/Tokyo", NOW) is None  # per zone too
    assert cache.get("a", "UTC", NOW + timedelta(hours=1)) is None  # expired
    assert cache.get("c", "UTC", NOW - timedelta(minutes=1)) is None  # read in its future
