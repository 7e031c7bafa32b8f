"""The best_hour wait on the real stack, on SQLite and PostgreSQL: profiles with opens in the
store each get their own local hour (the app's for one with none), a profile already inside
its best hour is sent at once, the others wait for their hour's start, computed from when the
node chose it; the run's report (service layer, API and CLI) counts the hours and sources.

No test waits hours: the time zone is chosen so the current local hour has at least ten
minutes left on either side, and every expected instant is computed from the times the run
recorded."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from rich.console import Console
from sqlalchemy import update
from sqlmodel import col

from tests.scene import APP, Scene, SceneFactory, journey, push
from tests.store.opens import forget_opens, seed_opens
from tidings.cli.runs import report as print_report
from tidings.journeys.best_hour import HourChoice
from tidings.runs.cancel import cancel_run
from tidings.runs.report import run_report
from tidings.runs.start import StartedRun
from tidings.runs.view import run_view
from tidings.store.models import Interaction


def zone_mid_hour(now: datetime) -> ZoneInfo:
    """UTC or India's zone (30 minutes off UTC, no DST): whichever is at least ten minutes
    from the hour's ends now."""
    for name in ("UTC", "Asia/Kolkata"):
        zone = ZoneInfo(name)
        if 10 <= now.astimezone(zone).minute < 50:
            return zone
    raise AssertionError("one of the two zones is always mid-hour")


def opens_at(zone: ZoneInfo, hour: int, days: range) -> list[datetime]:
    """Opens at ``hour``:05 local time, on each of ``days`` days ago."""
    today = datetime.now(zone).replace(minute=5, second=0, microsecond=0)
    return [(today.replace(hour=hour) - timedelta(days=d)).astimezone(UTC) for d in days]


# when a run starts, a zone mid-hour there and its hour: the run's window
MidHour = tuple[datetime, ZoneInfo, int]


def mid_hour(now: datetime) -> MidHour:
    zone = zone_mid_hour(now)
    return now, zone, now.astimezone(zone).hour


def still_mid_hour(window: MidHour, now: datetime) -> bool:
    """Still the window's hour once the run has started, and ten minutes from its end (for
    the run to choose within it)."""
    _, zone, current = window
    local = now.astimezone(zone)
    return local.hour == current and local.minute < 50


async def in_zone(s: Scene, zone: ZoneInfo, *profile_ids: str) -> None:
    for profile_id in profile_ids:
        answer = await s.stack.http.patch(f"/v1/profiles/{profile_id}", json={"timezone": zone.key})
        assert answer.status_code == 200, answer.text


def next_local(after: datetime, zone: ZoneInfo, hour: int) -> datetime:
    local = after.astimezone(zone)
    start = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if start <= local:
        start += timedelta(days=1)
    return start.astimezone(UTC)


async def test_each_profile_waits_for_its_own_best_hour(scene: SceneFactory) -> None:
    async with scene() as s:
        for profile_id in ("now", "later", "new", "fan"):
            await s.profile(profile_id)

        async def start(window: MidHour) -> StartedRun:
            _, zone, current = window
            await in_zone(s, zone, "now", "later", "new", "fan")
            await forget_opens(s.db, ["now", "later", "fan"])  # an earlier attempt's hours
            await seed_opens(s.db, APP, "now", opens_at(zone, current, range(1, 7)))
            await seed_opens(s.db, APP, "later", opens_at(zone, (current + 3) % 24, range(1, 7)))
            # a profile outside the run whose opens make the app's best hour (22 opens in all)
            await seed_opens(s.db, APP, "fan", opens_at(zone, (current + 5) % 24, range(1, 11)))
            definition = journey(
                {
                    "id": "best",
                    "type": "best_hour",
                    "within": "24h",
                    "default_hour": 4,
                    "next": "hi",
                },
                push("hi"),
            )
            return await s.start_journey(definition, ["now", "later", "new"])

        started, (started_at, zone, current) = await s.start_in_window(
            mid_hour, start, still_holds=still_mid_hour
        )
        later = (current + 3) % 24
        app_hour = (current + 5) % 24

        sent = await s.delivered(started.run_id, "hi", "now")

        async def chosen_for_all() -> bool:
            events = await s.journey_events(started.run_id)
            return len([e for e in events if e.kind == "best_hour"]) == 3

        await s.until(chosen_for_all, "an hour chosen for each profile")
        events = {
            e.profile_id: e for e in await s.journey_events(started.run_id) if e.kind == "best_hour"
        }
        choices = {pid: HourChoice.from_detail(e.detail or "") for pid, e in events.items()}
        assert {pid: (c.hour, c.source.value) for pid, c in choices.items()} == {
            "now": (current, "profile"),
            "later": (later, "profile"),
            "new": (app_hour, "app"),
        }
        # the timers, from when the node chose (recorded just after, within the same hour)
        chose_at = events["now"].occurred_at
        until = {pid: e.until for pid, e in events.items()}
        assert until["now"] is not None
        assert started_at <= until["now"] <= chose_at  # inside its hour: no wait
        assert until["now"].astimezone(zone).hour == current
        assert sent.created_at >= until["now"]
        assert until["later"] == next_local(chose_at, zone, later)
        assert until["new"] == next_local(chose_at, zone, app_hour)
        view = await run_view(s.client, s.db, started.run_id)
        assert view.positions == {"best": 2}

        # the report: the hours chosen and whose opens chose them, the same on every surface
        report = await run_report(s.db, started.run_id)
        (wait,) = report.best_hours
        assert wait.node_id == "best"
        assert wait.profiles == 3
        assert wait.by_source == {"profile": 2, "app": 1, "default": 0}
        expected_hours = [0] * 24
        for hour in (current, later, app_hour):
            expected_hours[hour] += 1
        assert wait.by_hour == expected_hours
        assert wait.by_hour_and_source["app"][app_hour] == 1
        answer = await s.stack.http.get(f"/v1/runs/{started.run_id}/report")
        assert answer.status_code == 200, answer.text
        assert answer.json()["best_hours"] == [wait.model_dump()]
        out = io.StringIO()
        await print_report(s.db, started.run_id, Console(file=out, width=160))
        printed = out.getvalue()
        assert "best hour best: 3 profiles (profile 2, app 1, default 0)" in printed
        assert f"{app_hour:02d}:00" in printed

        await cancel_run(s.client, s.db, started.run_id)
        result = await s.finish(started)
        assert result.status == "cancelled"
        assert result.counts["cancelled"] == 2
        assert {r.profile_id for r in await s.ledger(started.run_id)} == {"now"}


async def test_without_opens_the_default_hour_and_interactions_that_arrive_later_count(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        await s.profile("first")

        async def start(window: MidHour) -> StartedRun:
            _, zone, current = window
            await in_zone(s, zone, "first")
            definition = journey(
                {"id": "best", "type": "best_hour", "default_hour": current, "next": "hi"},
                push("hi"),
            )
            return await s.start_journey(definition, ["first"])

        started, (_, zone, current) = await s.start_in_window(
            mid_hour, start, still_holds=still_mid_hour
        )
        definition = journey(
            {"id": "best", "type": "best_hour", "default_hour": current, "next": "hi"},
            push("hi"),
        )
        sent = await s.delivered(started.run_id, "hi", "first")
        (event,) = [e for e in await s.journey_events(started.run_id) if e.kind == "best_hour"]
        assert HourChoice.from_detail(event.detail or "").source.value == "default"
        await s.finish(started)

        # opens reported through the API count toward the next choice, the hour they
        # happened at being the one they say: move the reported ones back into past days
        await s.interact(sent, "opened")
        async with s.db.write() as session:
            await session.exec(
                update(Interaction)
                .where(col(Interaction.tracking_id) == sent.tracking_id)
                .values(occurred_at=opens_at(zone, (current + 2) % 24, range(1, 2))[0])
            )
        await seed_opens(s.db, APP, "first", opens_at(zone, (current + 2) % 24, range(2, 6)))
        again = await s.start_journey(journey(*definition.model_dump()["nodes"]), ["first"])

        async def chosen() -> bool:
            events = await s.journey_events(again.run_id)
            return any(e.kind == "best_hour" for e in events)

        await s.until(chosen, "the second run's choice")
        (event,) = [e for e in await s.journey_events(again.run_id) if e.kind == "best_hour"]
        choice = HourChoice.from_detail(event.detail or "")
        assert (choice.hour, choice.source.value) == ((current + 2) % 24, "profile")
        await cancel_run(s.client, s.db, again.run_id)
        await s.finish(again)
