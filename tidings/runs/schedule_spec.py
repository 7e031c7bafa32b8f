"""A schedule's cadence as designers write it (once at a local date and time, every day or
every week at a local time in an IANA time zone, or every fixed interval), checked field by
field and turned into Temporal's ScheduleSpec. Pure: no store, no Temporal connection."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from temporalio.client import (
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleRange,
    ScheduleSpec,
)

from tidings.journeys.durations import format_duration, parse_duration

Kind = Literal["once", "daily", "weekly", "every"]
KINDS: tuple[str, ...] = get_args(Kind)
# in Temporal's numbering: Sunday is 0
WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
LOCAL_TIME = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")
LOCAL_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?$")
SHORTEST_EVERY = timedelta(seconds=1)
LONGEST_EVERY = timedelta(days=366)


class ScheduleInvalid(ValueError):
    """A schedule that cannot be made; ``field`` names what is wrong (``at``, ``time_zone``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Cadence:
    """When a schedule fires. ``at``: for ``once`` a local date and time (2026-12-24T09:00),
    for ``daily`` and ``weekly`` a local time (09:00); ``weekday`` for ``weekly``; ``every``
    a duration (6h) for ``every``; local times are read in ``time_zone``."""

    kind: Kind
    at: str | None = None
    weekday: str | None = None
    every: str | None = None
    time_zone: str = "UTC"

    def describe(self) -> str:
        if self.kind == "every":
            return f"every {self.every}"
        where = f" ({self.time_zone})"
        if self.kind == "once":
            return f"once at {(self.at or '').replace('T', ' ')}{where}"
        if self.kind == "daily":
            return f"every day at {self.at}{where}"
        return f"every {self.weekday} at {self.at}{where}"


@dataclass(frozen=True)
class CheckedCadence:
    spec: ScheduleSpec
    # a one-off schedule fires once (Temporal's limited actions), then stays for its record
    once: bool


def zone(name: str) -> ZoneInfo:
    if not name or len(name) > 64:
        raise ScheduleInvalid("time_zone", "give an IANA time zone such as Europe/Paris")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleInvalid(
            "time_zone", f"{name!r} is not an IANA time zone (such as Europe/Paris or UTC)"
        ) from None


def check_cadence(cadence: Cadence, now: datetime) -> CheckedCadence:
    """The Temporal spec of ``cadence``, or ScheduleInvalid naming the wrong field; a
    one-off time must be after ``now``."""
    if cadence.kind not in KINDS:
        raise ScheduleInvalid("kind", f"is one of {', '.join(KINDS)}, not {cadence.kind!r}")
    tz = zone(cadence.time_zone)
    if cadence.kind != "weekly" and cadence.weekday is not None:
        raise ScheduleInvalid("weekday", "is given only for a weekly schedule")
    if cadence.kind != "every" and cadence.every is not None:
        raise ScheduleInvalid("every", "is given only for an 'every' schedule")
    if cadence.kind == "every":
        if cadence.at is not None:
            raise ScheduleInvalid("at", "an 'every' schedule takes no time of day")
        every = _every(cadence.every)
        return CheckedCadence(
            ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]), once=False
        )
    if cadence.kind == "once":
        when = _local_date_time(cadence.at)
        if when.replace(tzinfo=tz) <= now:
            raise ScheduleInvalid(
                "at", f"{cadence.at} in {cadence.time_zone} has passed: give a later time"
            )
        calendar = ScheduleCalendarSpec(
            year=[ScheduleRange(when.year)],
            month=[ScheduleRange(when.month)],
            day_of_month=[ScheduleRange(when.day)],
            hour=[ScheduleRange(when.hour)],
            minute=[ScheduleRange(when.minute)],
            second=[ScheduleRange(when.second)],
        )
        return CheckedCadence(
            ScheduleSpec(calendars=[calendar], time_zone_name=cadence.time_zone), once=True
        )
    at = _local_time(cadence.at)
    days = [ScheduleRange(0, 6)]
    if cadence.kind == "weekly":
        if cadence.weekday is None or cadence.weekday.lower() not in WEEKDAYS:
            raise ScheduleInvalid(
                "weekday", f"a weekly schedule names one of {', '.join(WEEKDAYS)}"
            )
        days = [ScheduleRange(WEEKDAYS.index(cadence.weekday.lower()))]
    calendar = ScheduleCalendarSpec(
        hour=[ScheduleRange(at.hour)],
        minute=[ScheduleRange(at.minute)],
        second=[ScheduleRange(at.second)],
        day_of_week=days,
    )
    return CheckedCadence(
        ScheduleSpec(calendars=[calendar], time_zone_name=cadence.time_zone), once=False
    )


def _local_time(text: str | None) -> time:
    if text is None or not LOCAL_TIME.match(text):
        raise ScheduleInvalid("at", f"give a local time as HH:MM (24-hour), not {text!r}")
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise ScheduleInvalid("at", f"{text!r} is not a time of day") from None


def _local_date_time(text: str | None) -> datetime:
    if text is None or not LOCAL_DATE_TIME.match(text):
        raise ScheduleInvalid(
            "at",
            f"give a local date and time as YYYY-MM-DDTHH:MM (no offset: the time zone is "
            f"time_zone), not {text!r}",
        )
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ScheduleInvalid("at", f"{text!r} is not a date and time") from None


def _every(text: str | None) -> timedelta:
    if text is None:
        raise ScheduleInvalid("every", "an 'every' schedule gives its interval, such as 6h")
    try:
        every = parse_duration(text)
    except (ValueError, TypeError) as error:
        raise ScheduleInvalid("every", str(error)) from None
    if not SHORTEST_EVERY <= every <= LONGEST_EVERY:
        raise ScheduleInvalid(
            "every",
            f"is between {format_duration(SHORTEST_EVERY)} and {format_duration(LONGEST_EVERY)}",
        )
    return every
