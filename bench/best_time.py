"""What the best_hour wait gains over a fixed hour, on simulated open histories.

    python bench/best_time.py [--profiles 3000] [--days 60] [--send-chance 0.5] [--seed 7]
                              [--database-url URL]

Each simulated profile has a hidden preferred local hour (a mixture of mornings, lunch times
and evenings) and an engagement (its chance of opening at that hour, Beta(2, 5)). On a given
day its preference wanders by N(0, 1 h); a push sent at local hour t is opened with chance
``engagement * exp(-d² / (2 · 1.5²)) + 1 %``, d the hours between t and that day's preference
(around the clock). A fifth of the profiles moved their preference 21 days ago. Their
history: on each of ``--days`` days, a push with chance ``--send-chance`` (1/2) at a
uniformly random local hour from 07 to 22, opened (a few minutes later) as the model draws.
Profiles live in five time zones, one in ten without one (the journey's UTC).

The history is written to a fresh store (SQLite in a temporary directory unless
``--database-url``) as the ledger and the interactions hold it, and the hours are chosen by
``tidings.store.best_hours.choose_best_hours``, the code the best_hour node's activity runs,
in pages of 500 profiles (one query a page), the app's histogram read once as the activity
reads and caches it. Each strategy is scored by the *expected* open rate of one push sent
at the hour it picks (the model's chance, averaged over the day's wander), so the figures
carry no sampling noise of their own:

  fixed_10              every profile at 10:00 local (the node's default_hour)
  fixed_best            every profile at the one local hour that is best for the population,
                        chosen knowing the hidden preferences (the best a fixed hour can do)
  best_hour             the best_hour node's choice (14-day half-life)
  best_hour_no_decay    the same rules with every open weighing the same
  oracle                each profile at its hidden current preference (the ceiling)

The last line is one JSON object: those rates, ``gain_vs_fixed_10`` and
``gain_vs_fixed_best`` (relative), the sources of the choices, the rates of the profiles that moved
their preference and of the others, the share of profiles whose choice is within an hour of
their preference, and ``query_ms_per_page`` (p50, max).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from common import bench_home, emit, log
from sqlalchemy import insert

from tidings.journeys.best_hour import BestHourRules, HourChoice
from tidings.store.best_hours import app_histogram, choose_best_hours
from tidings.store.db import Database
from tidings.store.migrate import upgrade
from tidings.store.models import Delivery, Interaction, Profile

APP = "bench"
NOW = datetime(2026, 6, 10, 5, 0, tzinfo=UTC)
ZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC", "Asia/Kolkata"]
FALLBACK_ZONE = "UTC"
PAGE = 500
SPREAD_H = 1.5  # how far from its preference a profile still opens
WANDER_H = 1.0  # the day-to-day noise of the preference
FLOOR = 0.01
MOVED_DAYS_AGO = 21
# the day's wander integrated on a fixed grid of normal quantiles: exact enough, no noise
_WANDER = [WANDER_H * statistics.NormalDist().inv_cdf((i + 0.5) / 41) for i in range(41)]


@dataclass
class SimProfile:
    profile_id: str
    zone: str | None
    engagement: float
    preferred: float  # local hour, now
    preferred_before: float  # before it moved (equal when it did not)

    def chance(self, hour: float, preferred: float) -> float:
        """Chance of opening a push sent at local ``hour``, averaged over the day's wander."""
        total = 0.0
        for wander in _WANDER:
            apart = abs(hour - (preferred + wander)) % 24
            apart = min(apart, 24 - apart)
            total += self.engagement * math.exp(-(apart**2) / (2 * SPREAD_H**2))
        return min(1.0, total / len(_WANDER) + FLOOR)

    def opens_now(self, hour: int) -> float:
        # sent at hour:00-hour:59: the middle of the hour stands for it
        return self.chance(hour + 0.5, self.preferred)


def preferred_hour(rng: random.Random) -> float:
    kind = rng.random()
    if kind < 0.35:
        return rng.gauss(8.0, 1.0) % 24
    if kind < 0.60:
        return rng.gauss(12.5, 1.0) % 24
    return rng.gauss(20.0, 1.5) % 24


def simulate(count: int, rng: random.Random) -> list[SimProfile]:
    found = []
    for n in range(count):
        now = preferred_hour(rng)
        moved = rng.random() < 0.2
        found.append(
            SimProfile(
                profile_id=f"sim-{n:06d}",
                zone=None if rng.random() < 0.1 else rng.choice(ZONES),
                engagement=rng.betavariate(2, 5),
                preferred=now,
                preferred_before=preferred_hour(rng) if moved else now,
            )
        )
    return found


def history(
    profile: SimProfile, days: int, send_chance: float, rng: random.Random
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The profile's sends (ledger rows) and opens (interaction rows)."""
    zone = ZoneInfo(profile.zone or FALLBACK_ZONE)
    sends: list[dict[str, object]] = []
    opens: list[dict[str, object]] = []
    today = NOW.astimezone(zone).date()
    for days_ago in range(1, days + 1):
        if rng.random() >= send_chance:
            continue
        local = datetime.combine(today - timedelta(days=days_ago), datetime.min.time(), zone)
        sent_local = local + timedelta(hours=rng.randint(7, 22), minutes=rng.randint(0, 59))
        sent = sent_local.astimezone(UTC)
        preferred = profile.preferred if days_ago < MOVED_DAYS_AGO else profile.preferred_before
        hour = sent_local.hour + sent_local.minute / 60
        tracking_id = uuid.uuid4().hex
        sends.append(
            {
                "send_key": f"bench:{tracking_id}",
                "tracking_id": tracking_id,
                "run_id": "history",
                "workflow_id": "history",
                "journey_id": "history",
                "node_id": "push",
                "visit": 0,
                "app_id": APP,
                "profile_id": profile.profile_id,
                "status": "delivered",
                "attempts": 1,
                "unknown_outcomes": 0,
                "created_at": sent,
            }
        )
        if rng.random() < profile.chance(hour, preferred):
            opened = sent + timedelta(minutes=rng.randint(0, 20))
            opens.append(
                {
                    "scope": APP,
                    "event_id": f"{tracking_id}:opened",
                    "tracking_id": tracking_id,
                    "kind": "opened",
                    "status": "matched",
                    "app_id": APP,
                    "profile_id": profile.profile_id,
                    "node_id": "push",
                    "source": "bench",
                    "details": {},
                    "occurred_at": opened,
                    "received_at": opened,
                    "forwarded_at": opened,
                    "forward_attempts": 1,
                    "forward_failures": 0,
                }
            )
    return sends, opens


async def seed(
    db: Database, profiles: list[SimProfile], days: int, send_chance: float, rng: random.Random
) -> int:
    sends: list[dict[str, object]] = []
    opens: list[dict[str, object]] = []
    for profile in profiles:
        more_sends, more_opens = history(profile, days, send_chance, rng)
        sends += more_sends
        opens += more_opens
    async with db.write() as session:
        await session.exec(
            insert(Profile),
            params=[
                {
                    "id": p.profile_id,
                    "timezone": p.zone,
                    "attributes": {},
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for p in profiles
            ],
        )
        for start in range(0, len(sends), 5000):
            await session.exec(insert(Delivery), params=sends[start : start + 5000])
        for start in range(0, len(opens), 5000):
            await session.exec(insert(Interaction), params=opens[start : start + 5000])
    log(f"seeded {len(profiles)} profiles, {len(sends)} sends, {len(opens)} opens")
    return len(opens)


async def choose_all(
    db: Database, profiles: list[SimProfile], rules: BestHourRules
) -> tuple[dict[str, HourChoice], list[float]]:
    """Every profile's hour, a page at a time, as the best_hour node's activity chooses."""
    chosen: dict[str, HourChoice] = {}
    page_ms: list[float] = []
    async with db.read() as session:
        app = await app_histogram(session, APP, FALLBACK_ZONE, NOW, rules)
    for start in range(0, len(profiles), PAGE):
        page = profiles[start : start + PAGE]
        began = time.perf_counter()
        async with db.read() as session:
            chosen |= await choose_best_hours(
                session,
                app_id=APP,
                zones={p.profile_id: p.zone or FALLBACK_ZONE for p in page},
                fallback_zone=FALLBACK_ZONE,
                now=NOW,
                within=timedelta(hours=24),
                default_hour=10,
                app=app,
                rules=rules,
            )
        page_ms.append((time.perf_counter() - began) * 1000)
    return chosen, page_ms


def rate(profiles: list[SimProfile], hour_of: dict[str, float]) -> float:
    return statistics.fmean(p.chance(hour_of[p.profile_id], p.preferred) for p in profiles)


async def run(args: argparse.Namespace, home: Path) -> None:
    rng = random.Random(args.seed)
    url = args.database_url or f"sqlite:///{home / 'best_time.db'}"
    upgrade(url)
    db = Database(url)
    try:
        profiles = simulate(args.profiles, rng)
        opens = await seed(db, profiles, args.days, args.send_chance, rng)
        chosen, page_ms = await choose_all(db, profiles, BestHourRules())
        flat, _ = await choose_all(db, profiles, BestHourRules(half_life=timedelta(days=36_500)))
    finally:
        await db.dispose()
    middle = {pid: choice.hour + 0.5 for pid, choice in chosen.items()}
    flat_hours = {pid: c.hour + 0.5 for pid, c in flat.items()}
    fixed_best = max(
        range(24), key=lambda h: rate(profiles, {p.profile_id: h + 0.5 for p in profiles})
    )
    rates = {
        "fixed_10": rate(profiles, {p.profile_id: 10.5 for p in profiles}),
        "fixed_best": rate(profiles, {p.profile_id: fixed_best + 0.5 for p in profiles}),
        "best_hour": rate(profiles, middle),
        "best_hour_no_decay": rate(profiles, flat_hours),
        "oracle": rate(profiles, {p.profile_id: p.preferred for p in profiles}),
    }
    sources: dict[str, int] = {}
    for choice in chosen.values():
        sources[choice.source.value] = sources.get(choice.source.value, 0) + 1
    by_source = {
        source: {
            "best_hour": rate(group, middle),
            "fixed_10": rate(group, {p.profile_id: 10.5 for p in group}),
        }
        for source in sources
        if (group := [p for p in profiles if chosen[p.profile_id].source.value == source])
    }

    moved = [p for p in profiles if p.preferred_before != p.preferred]
    stayed = [p for p in profiles if p.preferred_before == p.preferred]
    by_move = {
        name: {"best_hour": rate(group, middle), "best_hour_no_decay": rate(group, flat_hours)}
        for name, group in (("moved", moved), ("stayed", stayed))
    }

    def near(p: SimProfile) -> bool:
        apart = abs(chosen[p.profile_id].hour + 0.5 - p.preferred) % 24
        return min(apart, 24 - apart) <= 1.0

    emit(
        {
            "profiles": len(profiles),
            "days": args.days,
            "send_chance": args.send_chance,
            "opens": opens,
            "store": url.split(":", 1)[0],
            "open_rate": {name: round(value, 4) for name, value in rates.items()},
            "fixed_best_hour": fixed_best,
            "gain_vs_fixed_10": round(rates["best_hour"] / rates["fixed_10"] - 1, 3),
            "gain_vs_fixed_best": round(rates["best_hour"] / rates["fixed_best"] - 1, 3),
            "share_of_oracle_gain_over_fixed_best": round(
                (rates["best_hour"] - rates["fixed_best"])
                / (rates["oracle"] - rates["fixed_best"]),
                3,
            ),
            "sources": sources,
            "open_rate_by_source": {
                source: {k: round(v, 4) for k, v in values.items()}
                for source, values in by_source.items()
            },
            "open_rate_moved_or_not": {
                name: {k: round(v, 4) for k, v in values.items()}
                for name, values in by_move.items()
            },
            "within_an_hour_of_preference": round(
                sum(1 for p in profiles if near(p)) / len(profiles), 3
            ),
            "query_ms_per_page": {
                "page": PAGE,
                "p50": round(statistics.median(page_ms), 1),
                "max": round(max(page_ms), 1),
            },
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=3000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--send-chance", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", help="a fresh store (default: SQLite in --home)")
    parser.add_argument("--home", help="keep the store here (default: a temporary directory)")
    args = parser.parse_args()
    with bench_home(args.home) as home:
        asyncio.run(run(args, home))


if __name__ == "__main__":
    main()
