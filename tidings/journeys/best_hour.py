"""Choosing a profile's best hour to be sent a push: the rules of the ``best_hour`` node.

An *open* is a push of the app the profile opened (a click counts: it opens the push), one
per push however many times it was reported, at the local hour it was opened, read in the
profile's time zone (the journey's when it has none), as quiet hours read it.

- Each open weighs ``0.5 ** (age / half_life)``: with the 14-day half-life an open of two
  weeks ago counts half as much as one of today. Opens older than the lookback (90 days,
  where a weight is under 1.2 %) are not read.
- A profile's own histogram is trusted once it has at least ``profile_min_opens`` (5) opens
  in the lookback; the app's (every profile's opens of the app's pushes, each at its own
  profile's local hour) once it has ``app_min_opens`` (20).
- The hour chosen is the one of the window's hours (``tidings.journeys.localtime
  .hour_starts``) with the most weight in the profile's trusted histogram; none of them has
  any (or the histogram is not trusted): in the app's; else ``default_hour``, or the window's
  hour nearest it when the window does not reach it. A tie goes to the sooner hour.

These functions are pure; ``tidings.store.best_hours`` reads the opens and calls them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter

from tidings.journeys.localtime import hour_starts


class HourSource(StrEnum):
    """Whose opens chose the hour."""

    PROFILE = "profile"
    APP = "app"
    DEFAULT = "default"


@dataclass(frozen=True)
class BestHourRules:
    half_life: timedelta = timedelta(days=14)
    lookback: timedelta = timedelta(days=90)
    profile_min_opens: int = 5
    app_min_opens: int = 20


RULES = BestHourRules()


@dataclass
class HourHistogram:
    """Decayed open weight per local hour (0-23), and how many opens it holds."""

    weights: list[float] = field(default_factory=lambda: [0.0] * 24)
    opens: int = 0

    def add(self, local_hour: int, weight: float) -> None:
        self.weights[local_hour] += weight
        self.opens += 1


def decay(age: timedelta, half_life: timedelta) -> float:
    """The weight of an open ``age`` old; an open stamped in the future weighs as one now."""
    return float(0.5 ** (max(age, timedelta(0)) / half_life))


def histogram(
    opens: Iterable[tuple[datetime, ZoneInfo]], now: datetime, rules: BestHourRules = RULES
) -> HourHistogram:
    """The histogram of opens, each given with the zone its local hour is read in."""
    built = HourHistogram()
    for opened_at, zone in opens:
        built.add(opened_at.astimezone(zone).hour, decay(now - opened_at, rules.half_life))
    return built


@dataclass(frozen=True)
class HourChoice:
    hour: int  # local hour of day, 0-23
    source: HourSource

    def as_detail(self) -> str:
        """As a journey event's detail keeps it (the run report reads it back)."""
        return json.dumps({"hour": self.hour, "source": self.source.value})

    @classmethod
    def from_detail(cls, detail: str) -> HourChoice:
        return _CHOICE.validate_json(detail)


def choose_hour(
    now: datetime,
    zone: ZoneInfo,
    within: timedelta,
    default_hour: int,
    profile: HourHistogram | None,
    app: HourHistogram | None,
    rules: BestHourRules = RULES,
) -> HourChoice:
    """The profile's best hour in the window [now, now + within), and whose opens chose it."""
    starts = hour_starts(now, zone, within)
    # sooner first: a tie in weight goes to the sooner hour
    window = sorted(starts, key=lambda hour: starts[hour])
    for source, found, least in (
        (HourSource.PROFILE, profile, rules.profile_min_opens),
        (HourSource.APP, app, rules.app_min_opens),
    ):
        if found is None or found.opens < least:
            continue
        best = max(window, key=lambda hour: found.weights[hour])
        if found.weights[best] > 0:
            return HourChoice(best, source)
    nearest = min(window, key=lambda hour: _hours_apart(hour, default_hour))
    return HourChoice(nearest, HourSource.DEFAULT)


def _hours_apart(a: int, b: int) -> int:
    apart = abs(a - b) % 24
    return min(apart, 24 - apart)


def by_profile(
    opens: Iterable[tuple[str, datetime]],
    zones: Mapping[str, ZoneInfo],
    now: datetime,
    rules: BestHourRules = RULES,
) -> dict[str, HourHistogram]:
    """Histograms of (profile id, opened at) pairs, each profile's in its own zone."""
    grouped: dict[str, list[tuple[datetime, ZoneInfo]]] = {}
    for profile_id, opened_at in opens:
        grouped.setdefault(profile_id, []).append((opened_at, zones[profile_id]))
    return {pid: histogram(found, now, rules) for pid, found in grouped.items()}


_CHOICE: TypeAdapter[HourChoice] = TypeAdapter(HourChoice)
