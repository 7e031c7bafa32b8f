"""Best hours: each profile arriving at a best_hour node gets the local hour it opens pushes
most, chosen in one query for the whole step (tidings.store.best_hours).

The app's histogram, the fallback for profiles with too few opens, changes slowly and costs a
bounded scan: each worker keeps it per (app, journey zone) for an hour, for at most 256 keys,
the least recently used dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import activity

from activities.contracts import BestHourRequest, BestHours, ChosenHour
from activities.declarations import CHOOSE_BEST_HOURS, BestHourActivity
from tidings.journeys.best_hour import HourHistogram
from tidings.store.best_hours import app_histogram, choose_best_hours
from tidings.store.db import Database

APP_HISTOGRAM_TTL = timedelta(hours=1)
APP_HISTOGRAMS_KEPT = 256


@dataclass(frozen=True)
class _Cached:
    histogram: HourHistogram
    read_at: datetime


class AppHistograms:
    """The apps' histograms a worker read lately (a bounded, time-limited cache)."""

    def __init__(self, ttl: timedelta = APP_HISTOGRAM_TTL, kept: int = APP_HISTOGRAMS_KEPT):
        self._ttl = ttl
        self._kept = kept
        self._found: OrderedDict[tuple[str, str], _Cached] = OrderedDict()

    def get(self, app_id: str, zone: str, now: datetime) -> HourHistogram | None:
        cached = self._found.get((app_id, zone))
        if cached is None or not timedelta(0) <= now - cached.read_at < self._ttl:
            return None
        self._found.move_to_end((app_id, zone))
        return cached.histogram

    def put(self, app_id: str, zone: str, now: datetime, histogram: HourHistogram) -> None:
        self._found[(app_id, zone)] = _Cached(histogram, now)
        self._found.move_to_end((app_id, zone))
        while len(self._found) > self._kept:
            self._found.popitem(last=False)


class BestHourActivities(BestHourActivity):
    def __init__(self, db: Database, app_histograms: AppHistograms | None = None) -> None:
        self._db = db
        self._apps = app_histograms or AppHistograms()

    @activity.defn(name=CHOOSE_BEST_HOURS)
    async def choose(self, request: BestHourRequest) -> BestHours:
        async with self._db.read() as session:
            app = self._apps.get(request.app_id, request.fallback_zone, request.now)
            if app is None:
                app = await app_histogram(
                    session, request.app_id, request.fallback_zone, request.now
                )
                self._apps.put(request.app_id, request.fallback_zone, request.now, app)
            chosen = await choose_best_hours(
                session,
                app_id=request.app_id,
                zones=request.zones,
                fallback_zone=request.fallback_zone,
                now=request.now,
                within=request.within,
                default_hour=request.default_hour,
                app=app,
            )
        return BestHours(
            chosen={pid: ChosenHour(c.hour, c.source.value) for pid, c in chosen.items()}
        )
