"""The opens a ``best_hour`` wait chooses from, read from the interactions in set-based
queries, and the choice itself (the rules are in tidings.journeys.best_hour).

A cohort's profiles are read in one query: their sends of the app in the lookback
(``ix_delivery_profile_time``) joined to the opens and clicks reported on them
(``ix_interaction_tracking``), one row per push opened. The app's histogram reads a bounded
sample, the app's latest opens among the latest interactions (a range of the primary key), so
its cost does not grow with the table; callers cache it (activities/best_hour.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.journeys.best_hour import (
    RULES,
    BestHourRules,
    HourChoice,
    HourHistogram,
    HourSource,
    by_profile,
    choose_hour,
    histogram,
)
from tidings.journeys.localtime import zone_for
from tidings.store.models import Delivery, Interaction, InteractionKind
from tidings.store.models.profiles import Profile

OPEN_KINDS = (InteractionKind.OPENED.value, InteractionKind.CLICKED.value)
# the profiles of one query: a cohort is at most 5,000 (TIDINGS_COHORT_SIZE), under every
# backend's limit on bound parameters
PROFILES_PER_QUERY = 5000
# the app's histogram: its latest opens among the latest interactions of every app
APP_SCAN = 200_000
APP_SAMPLE = 5000


async def profile_opens(
    session: AsyncSession, app_id: str, profile_ids: Sequence[str], since: datetime
) -> list[tuple[str, datetime]]:
    """(profile id, opened at) of every push of the app sent to these profiles since
    ``since`` that was opened or clicked: the first such report of each push."""
    found: list[tuple[str, datetime]] = []
    for start in range(0, len(profile_ids), PROFILES_PER_QUERY):
        rows = await session.exec(
            select(col(Delivery.profile_id), func.min(col(Interaction.occurred_at)))
            .join(Interaction, col(Interaction.tracking_id) == col(Delivery.tracking_id))
            .where(col(Delivery.profile_id).in_(profile_ids[start : start + PROFILES_PER_QUERY]))
            .where(col(Delivery.created_at) >= since)
            .where(col(Delivery.app_id) == app_id)
            # joined to its push, an interaction is matched: no filter on its status, which
            # would tempt SQLite's planner to walk every matched interaction by that index
            .where(col(Interaction.kind).in_(OPEN_KINDS))
            .group_by(col(Delivery.profile_id), col(Delivery.id))
        )
        found.extend((profile_id, opened_at) for profile_id, opened_at in rows.all())
    return found


async def app_opens(
    session: AsyncSession, app_id: str, since: datetime
) -> list[tuple[datetime, str | None]]:
    """(opened at, the profile's time zone) of the app's latest opens: at most
    ``APP_SAMPLE`` pushes, among the latest ``APP_SCAN`` interactions stored."""
    newest = (await session.exec(select(func.max(col(Interaction.id))))).one()
    if newest is None:
        return []
    rows = await session.exec(
        select(col(Interaction.tracking_id), col(Interaction.occurred_at), col(Profile.timezone))
        .outerjoin(Profile, col(Profile.id) == col(Interaction.profile_id))
        .where(col(Interaction.id) > newest - APP_SCAN)
        .where(col(Interaction.app_id) == app_id)
        .where(col(Interaction.kind).in_(OPEN_KINDS))
        # matched: a report that names no push has no profile (not the status, whose index
        # would take the planner away from the primary key's range)
        .where(col(Interaction.profile_id).is_not(None))
        .where(col(Interaction.occurred_at) >= since)
        .order_by(col(Interaction.id).desc())
        .limit(APP_SAMPLE * len(OPEN_KINDS))
    )
    first: dict[str, tuple[datetime, str | None]] = {}
    for tracking_id, opened_at, zone in rows.all():
        seen = first.get(tracking_id)
        if seen is None or opened_at < seen[0]:
            first[tracking_id] = (opened_at, zone)
    return list(first.values())[:APP_SAMPLE]


async def app_histogram(
    session: AsyncSession,
    app_id: str,
    fallback_zone: str,
    now: datetime,
    rules: BestHourRules = RULES,
) -> HourHistogram:
    """The app's histogram: each open at its own profile's local hour (``fallback_zone``
    for a profile without one)."""
    opens = await app_opens(session, app_id, now - rules.lookback)
    return histogram(
        ((opened_at, zone_for(zone, fallback_zone)) for opened_at, zone in opens), now, rules
    )


async def choose_best_hours(
    session: AsyncSession,
    *,
    app_id: str,
    zones: Mapping[str, str],
    fallback_zone: str,
    now: datetime,
    within: timedelta,
    default_hour: int,
    app: HourHistogram | None = None,
    rules: BestHourRules = RULES,
) -> dict[str, HourChoice]:
    """Each profile's hour (``zones``: profile id -> the zone its hours are read in) in one
    query for them all; the app's histogram is read unless given (a cached one)."""
    profile_zones = {pid: zone_for(zone, fallback_zone) for pid, zone in zones.items()}
    opens = await profile_opens(session, app_id, list(zones), now - rules.lookback)
    histograms = by_profile(opens, profile_zones, now, rules)
    choices = {
        pid: choose_hour(now, zone, within, default_hour, histograms.get(pid), app, rules)
        for pid, zone in profile_zones.items()
    }
    falling_back = [pid for pid, c in choices.items() if c.source is HourSource.DEFAULT]
    if app is None and falling_back:
        # read only when some profile's own opens do not decide its hour
        app = await app_histogram(session, app_id, fallback_zone, now, rules)
        for pid in falling_back:
            choices[pid] = choose_hour(
                now, profile_zones[pid], within, default_hour, histograms.get(pid), app, rules
            )
    return choices
