"""Journey settings end to end: quiet hours postpone a send (recorded as postponed), a
frequency cap shared by two journeys (a capped push is not sent, the profile goes on; a
journey may bypass it) over its 24 h, 7 d and 30 d windows, a goal event makes a profile
leave, and custom events drive a wait_for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update
from sqlmodel import col

from tests.scene import SceneFactory, journey, push
from tidings.runs.start import StartedRun
from tidings.store.models import Delivery
from tidings.store.reports import node_funnels


async def test_quiet_hours_postpone_a_send_until_the_window_ends(scene: SceneFactory) -> None:
    async with scene() as s:
        await s.profile("night", timezone="America/New_York")
        await s.profile("day", timezone="Asia/Kolkata")
        new_york = ZoneInfo("America/New_York")

        async def start(at: datetime) -> StartedRun:
            # quiet from an hour ago until ``at`` in New York: hours away in Kolkata
            local = at.astimezone(new_york)
            definition = journey(
                push("hello"),
                quiet_hours={
                    "start": (local - timedelta(hours=1)).strftime("%H:%M:%S"),
                    "end": local.strftime("%H:%M:%S"),
                },
            )
            return await s.start_journey(definition, ["night", "day"])

        started, end = await s.start_ahead(timedelta(seconds=4), start)
        result = await s.finish(started)

        rows = {r.profile_id: r for r in await s.ledger(started.run_id)}
        assert rows["night"].status == rows["day"].status == "delivered"
        window_end = end.replace(microsecond=0)
        assert rows["night"].created_at >= window_end
        assert rows["day"].created_at < window_end
        events = await s.journey_events(started.run_id)
        assert [(e.profile_id, e.kind, e.node_id) for e in events] == [
            ("night", "postponed", "hello")
        ]
        assert events[0].until == window_end
        assert result.counts["postponed"] == 1
        async with s.db.read() as session:
            (funnel,) = await node_funnels(session, started.run_id)
        assert (funnel.postponed, funnel.delivered) == (1, 2)


async def test_a_frequency_cap_is_shared_by_journeys_and_may_be_bypassed(
    scene: SceneFactory,
) -> None:
    async with scene(frequency_cap_24h=1) as s:
        for profile in ("p1", "p2", "p3"):
            await s.profile(profile)
        first = await s.start_journey(journey(push("a1")), ["p1", "p2"])
        await s.finish(first)
        second = await s.start_journey(
            journey(push("b1", next="b2"), push("b2")), ["p1", "p2", "p3"]
        )
        result = await s.finish(second)
        bypassing = await s.start_journey(journey(push("c1"), frequency_cap="bypass"), ["p1"])
        await s.finish(bypassing)

        rows = {(r.profile_id, r.node_id): r for r in await s.ledger(second.run_id)}
        capped = "frequency cap: 1 pushes in 24h (limit 1)"
        assert {
            k: (r.status, r.reason if r.status == "not_sent" else "") for k, r in rows.items()
        } == {
            ("p1", "b1"): ("not_sent", capped),
            ("p2", "b1"): ("not_sent", capped),
            ("p3", "b1"): ("delivered", ""),
            ("p1", "b2"): ("not_sent", capped),
            ("p2", "b2"): ("not_sent", capped),
            ("p3", "b2"): ("not_sent", capped),
        }
        assert result.counts["completed"] == 3  # capped profiles went on down the journey
        (bypassed,) = await s.ledger(bypassing.run_id)
        assert bypassed.status == "delivered"


async def test_goal_events_make_profiles_leave_and_events_drive_wait_for(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        for profile in ("buyer", "browser", "returns", "stays-away"):
            await s.profile(profile)
        with_goal = journey(
            push("hello", next="pause"),
            {"id": "pause", "type": "delay", "duration": "3s", "next": "follow-up"},
            push("follow-up"),
            goal={"event": "purchased"},
        )
        waiting = journey(
            push("hello", next="wait"),
            {
                "id": "wait",
                "type": "wait_for",
                "event": "opened_app",
                "timeout": "3s",
                "matched": "welcome-back",
                "timed_out": "we-miss-you",
            },
            push("welcome-back"),
            push("we-miss-you"),
        )
        goal_run = await s.start_journey(with_goal, ["buyer", "browser"])
        wait_run = await s.start_journey(waiting, ["returns", "stays-away"])
        await s.delivered(goal_run.run_id, "hello", "buyer")
        await s.delivered(wait_run.run_id, "hello", "returns")
        answer = await s.event("buyer", "purchased")
        assert answer["signalled"] == 1
        assert answer["forwarded"]
        assert (await s.event("returns", "opened_app"))["signalled"] == 1
        goal_result = await s.finish(goal_run)
        wait_result = await s.finish(wait_run)

        goal_sent = {(r.profile_id, r.node_id) for r in await s.ledger(goal_run.run_id)}
        assert goal_sent == {("buyer", "hello"), ("browser", "hello"), ("browser", "follow-up")}
        assert goal_result.counts["goal"] == 1
        events = await s.journey_events(goal_run.run_id)
        assert [(e.profile_id, e.kind, e.node_id) for e in events if e.kind == "goal"] == [
            ("buyer", "goal", "pause")
        ]
        wait_sent = {(r.profile_id, r.node_id) for r in await s.ledger(wait_run.run_id)}
        assert ("returns", "welcome-back") in wait_sent
        assert ("stays-away", "we-miss-you") in wait_sent
        assert (wait_result.counts["wait.matched"], wait_result.counts["wait.timed_out"]) == (
            1,
            1,
        )


async def test_the_7_day_and_30_day_cap_windows(scene: SceneFactory) -> None:
    async with scene(frequency_cap_7d=2, frequency_cap_30d=3) as s:
        ages = {"this-week": 3, "this-month": 20, "long-ago": 40}  # days
        for profile in ages:
            await s.profile(profile)
        earlier = await s.start_journey(journey(push("e1", next="e2"), push("e2")), list(ages))
        await s.finish(earlier)
        # each profile's two pushes, as if sent that many days ago
        now = datetime.now(UTC)
        async with s.db.write() as session:
            for profile, days in ages.items():
                await session.exec(
                    update(Delivery)
                    .where(col(Delivery.profile_id) == profile)
                    .values(created_at=now - timedelta(days=days))
                )
        probe = await s.start_journey(journey(push("p1", next="p2"), push("p2")), list(ages))
        result = await s.finish(probe)

        rows = {(r.profile_id, r.node_id): r for r in await s.ledger(probe.run_id)}
        outcome = {
            k: (r.status, r.reason if r.status == "not_sent" else "") for k, r in rows.items()
        }
        week = "frequency cap: 2 pushes in 7d (limit 2)"
        month = "frequency cap: 3 pushes in 30d (limit 3)"
        assert outcome == {
            # two pushes 3 days ago fill the 7-day window
            ("this-week", "p1"): ("not_sent", week),
            ("this-week", "p2"): ("not_sent", week),
            # 20 days ago is outside the 7-day window, inside the 30-day one: one more fits
            ("this-month", "p1"): ("delivered", ""),
            ("this-month", "p2"): ("not_sent", month),
            # 40 days ago counts in no window
            ("long-ago", "p1"): ("delivered", ""),
            ("long-ago", "p2"): ("delivered", ""),
        }
        assert result.counts["completed"] == 3
