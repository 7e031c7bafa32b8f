"""Local clock arithmetic for quiet hours and wait_until, in a profile's time zone.

Pure functions of a UTC instant (the interpreter passes ``workflow.now()``) and a zone, so
they are deterministic on replay. Workflows import this module passed through the sandbox:
it runs with the real zoneinfo (the sandbox proxies zoneinfo's classes), and zone data is
read once per process, not once per workflow.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def zone_for(profile_zone: str | None, journey_zone: str) -> ZoneInfo:
    """The profile's zone, or the journey's when the profile has none (or an unknown one)."""
    if profile_zone:
        try:
            return ZoneInfo(profile_zone)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(journey_zone)


def quiet_until(now: datetime, zone: ZoneInfo, start: time, end: time) -> datetime | None:
    """When the quiet window around ``now`` ends (UTC), or None when ``now`` is outside it.
    The window is [start, end) in local wall time and may wrap midnight."""
    local = now.astimezone(zone)
    wall = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= wall < end
        end_date = local.date()
    else:
        inside = wall >= start or wall < end
        end_date = local.date() + timedelta(days=1) if wall >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_date, end, tzinfo=zone).astimezone(UTC)


def next_local_time(now: datetime, zone: ZoneInfo, at: time, weekdays: Collection[str]) -> datetime:
    """The first instant at or after ``now`` whose local time is ``at`` on an allowed
    weekday (UTC)."""
    local = now.astimezone(zone)
    for days in range(8):
        day = local.date() + timedelta(days=days)
        if WEEKDAY_NAMES[day.weekday()] not in weekdays:
            continue
        candidate = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
        if candidate >= now:
            return candidate
    raise ValueError(f"no allowed weekday in {sorted(weekdays)!r}")


def hour_starts(now: datetime, zone: ZoneInfo, within: timedelta) -> dict[int, datetime]:
    """Each local hour of day the window [now, now + within) reaches, and when it first
    begins there (UTC). The hour ``now`` is in begins at ``now``: a profile already inside
    it need not wait a day for it. A local hour a DST change skips is absent; with a window
    of an hour or more at least one hour is always present."""
    end = now + within
    local = now.astimezone(zone)
    starts: dict[int, datetime] = {local.hour: now}
    day = local.date()
    last_day = end.astimezone(zone).date()
    while day <= last_day:
        for hour in range(24):
            begins = datetime.combine(day, time(hour), tzinfo=zone).astimezone(UTC)
            # a skipped wall time resolves to an instant of another local hour: not this one
            if begins.astimezone(zone).hour != hour:
                continue
            if now < begins < end and hour not in starts:
                starts[hour] = begins
        day += timedelta(days=1)
    return starts


def best_hour_wake(now: datetime, zone: ZoneInfo, hour: int, within: timedelta) -> datetime:
    """When a profile waiting from ``now`` for local ``hour`` within ``within`` goes on: the
    hour's first start in the window, ``now`` when it is the current hour, or the window's
    end when the window does not reach it."""
    return hour_starts(now, zone, within).get(hour, now + within)
