"""A push's TTL runs from the moment the profile reached the node: a send held for quiet hours
past its TTL is recorded expired and never reaches a provider. A TTL of 0 is "now or never":
one immediate attempt, expired on any retry or hold.

The deadlines themselves are pure (activities/expiry.py); the rest runs on the real stack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from activities.contracts import ProfileVisit, PushBatch
from activities.delivery.expiry import NOW_OR_NEVER, send_deadlines
from tests.scene import SceneFactory, in_a_fresh_window, journey, push
from tidings.journeys.model import PushContent
from tidings.runs.start import StartedRun
from tidings.sim import Answer, Scenario
from tidings.store.reports import EXPIRED_REASON, node_funnels, run_funnel

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def batch(ttl_s: int | None, *visits: ProfileVisit, sent_at: datetime = NOW) -> PushBatch:
    return PushBatch(
        run_id="run",
        journey_id="j",
        workflow_id="run/cohort-000001",
        node_id="hello",
        app_id="demo",
        content=PushContent(title="t"),
        ttl_s=ttl_s,
        reached_at=sent_at,
        profiles=list(visits),
    )


def test_without_a_ttl_nothing_expires() -> None:
    deadlines = send_deadlines(batch(None, ProfileVisit("a")), NOW + timedelta(days=9), 5)
    assert (deadlines.expired, deadlines.expires_at) == ({}, None)


def test_the_ttl_runs_from_each_profiles_arrival_not_from_the_send() -> None:
    held_long = ProfileVisit("long", reached_at=NOW - timedelta(hours=9))
    held_short = ProfileVisit("short", reached_at=NOW - timedelta(minutes=10))
    deadlines = send_deadlines(batch(3600, held_long, held_short), NOW, 1)
    assert list(deadlines.expired) == ["long"]
    assert "TTL of 3600s" in deadlines.expired["long"]
    assert deadlines.expires_at == NOW + timedelta(minutes=50)  # the one still live
    # a batch from before arrival times: the batch's own time is the arrival
    legacy = send_deadlines(batch(60, ProfileVisit("a")), NOW, 1)
    assert (legacy.expired, legacy.expires_at) == ({}, NOW + timedelta(seconds=60))
    late = send_deadlines(batch(60, ProfileVisit("a")), NOW + timedelta(seconds=60), 2)
    assert list(late.expired) == ["a"]
    assert late.expires_at == NOW + timedelta(seconds=60)


def test_a_ttl_of_0_means_one_immediate_attempt() -> None:
    at_once = ProfileVisit("a", reached_at=NOW)
    first = send_deadlines(batch(0, at_once), NOW + timedelta(milliseconds=30), 1)
    assert first.expired == {}
    assert first.expires_at == NOW + timedelta(milliseconds=30) + NOW_OR_NEVER
    retry = send_deadlines(batch(0, at_once), NOW + timedelta(seconds=2), 2)
    assert retry.expired == {"a": "expired: TTL 0s (now or never) allows no retry"}
    held = ProfileVisit("b", reached_at=NOW - timedelta(hours=1))
    on_release = send_deadlines(batch(0, held), NOW, 1)
    assert list(on_release.expired) == ["b"]
    assert "held" in on_release.expired["b"]


async def test_a_push_held_by_quiet_hours_past_its_ttl_is_recorded_expired(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        night = await s.profile("night", timezone="America/New_York")
        day = await s.profile("day", timezone="Asia/Kolkata")
        new_york = ZoneInfo("America/New_York")

        def quiet_until(at: datetime) -> dict[str, str]:
            # quiet from an hour ago until ``at`` in New York: hours away in Kolkata
            local = at.astimezone(new_york)
            return {
                "start": (local - timedelta(hours=1)).strftime("%H:%M:%S"),
                "end": local.strftime("%H:%M:%S"),
            }

        async def start_both(at: datetime) -> tuple[StartedRun, StartedRun]:
            quiet = quiet_until(at)
            short = await s.start_journey(
                journey(push("hello", ttl="2s"), quiet_hours=quiet), ["night", "day"]
            )
            instant = await s.start_journey(
                journey(push("hello", ttl="0s"), quiet_hours=quiet), ["night", "day"]
            )
            return short, instant

        async def stop_both(both: tuple[StartedRun, StartedRun]) -> None:
            for started in both:
                await started.handle.terminate("its quiet hours passed before it started")
            s.sims.reset()  # the next attempt's sends are the only ones counted

        lead = timedelta(seconds=4)
        (short, instant), _ = await in_a_fresh_window(
            lambda now: now + lead,
            start_both,
            still_holds=lambda at, now: now <= at - lead / 2,
            undo=stop_both,
        )
        short_result = await s.finish(short)
        instant_result = await s.finish(instant)

        reasons = {}
        for started, result in ((short, short_result), (instant, instant_result)):
            rows = {r.profile_id: r for r in await s.ledger(started.run_id)}
            assert rows["day"].status == "delivered"
            assert rows["night"].status == "expired"
            reasons[started.run_id] = rows["night"].reason or ""
            assert result.counts["postponed"] == 1
            assert result.counts["push.expired"] == 1
            kinds = [(e.profile_id, e.kind) for e in await s.journey_events(started.run_id)]
            assert kinds == [("night", "postponed")]
        assert "TTL of 2s from reaching the node" in reasons[short.run_id]
        # the reports count the expired push as not sent, under one reason
        async with s.db.read() as session:
            funnel = await run_funnel(session, short.run_id)
            (node,) = await node_funnels(session, short.run_id)
        assert funnel.not_sent_reasons == {EXPIRED_REASON: 1}
        assert (node.sent, node.not_sent) == (1, {EXPIRED_REASON: 1})
        assert "TTL 0s (now or never)" in reasons[instant.run_id]
        # nothing reached the provider for the held profile; the other got both pushes
        assert s.sims.apns.records(token=night[0]) == []
        assert len(s.sims.apns.accepted(token=day[0])) == 2


async def test_a_ttl_of_0_is_sent_at_once_and_never_retried(scene: SceneFactory) -> None:
    async with scene() as s:
        (fine,) = await s.profile("fine", devices=("fcm",))
        (busy,) = await s.profile("busy")
        s.sims.apns.set_scenario(
            Scenario(scripted={busy: [Answer(reason="ServiceUnavailable")] * 5})
        )
        started = await s.start_journey(journey(push("now", ttl="0s")), ["fine", "busy"])
        result = await s.finish(started)

        rows = {r.profile_id: r for r in await s.ledger(started.run_id)}
        assert rows["fine"].status == "delivered"
        # the provider is told: now or never
        (sent,) = s.sims.fcm.accepted(token=fine)
        assert sent.payload is not None
        assert sent.payload["android"]["ttl"] == "0s"
        # the busy provider got the one immediate attempt; its retry was expired, not sent
        assert rows["busy"].status == "expired"
        assert len(s.sims.apns.records(token=busy)) == 1
        assert result.counts["push.delivered"] == result.counts["push.expired"] == 1
