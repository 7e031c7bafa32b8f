"""Runs at work: a cohort that continues as new mid-run keeps its profiles' state and the
events it has seen; a cancel stops new sends, lets the sends in flight settle, and reports
both."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from sqlmodel import select

from tests.scene import Scene, SceneFactory, journey, push
from tidings.runs.cancel import cancel_run
from tidings.runs.view import run_view
from tidings.sim.scenario import FixedLatency, Scenario
from tidings.store.models import JourneyRun
from tidings.worker.resources import engine_options
from workflows.contracts import INTERACTIONS_SIGNAL, InteractionBatch, InteractionEvent


async def runs_of(s: Scene, workflow_id: str) -> int:
    return len([w async for w in s.client.list_workflows(f'WorkflowId = "{workflow_id}"')])


async def test_a_cohort_continues_as_new_mid_run_keeping_state_and_seen_events(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        await s.profile("x")
        await s.profile("y")
        definition = journey(
            push("one", next="pause"),
            {"id": "pause", "type": "delay", "duration": "2s", "next": "two"},
            push("two", next="wait"),
            {
                "id": "wait",
                "type": "wait_for",
                "event": "ping",
                "timeout": "4s",
                "matched": "three",
            },
            push("three"),
        )
        options = dataclasses.replace(engine_options(s.stack.settings), cohort_history_limit=25)
        started = await s.start_journey(definition, ["x", "y"], options=options)
        cohort_id = f"{started.run_id}/cohort-000001"
        await s.delivered(started.run_id, "one", "x")
        # before x waits for it: counted as received, not as the awaited ping
        assert (await s.event("x", "ping", "e-1"))["signalled"] == 1

        async def continued() -> bool:
            return await runs_of(s, cohort_id) >= 2

        await s.until(continued, "the cohort continued as new")
        await s.delivered(started.run_id, "two", "x")
        # the forwarder may deliver an event again: the new run still knows e-1
        again = InteractionEvent(
            event_id="event:e-1",
            profile_id="x",
            kind="custom",
            occurred_at=datetime.now(UTC),
            name="ping",
        )
        await s.client.get_workflow_handle(cohort_id).signal(
            INTERACTIONS_SIGNAL, InteractionBatch([again])
        )
        await s.event("x", "ping", "e-2")
        result = await s.finish(started)

        sent = sorted((r.profile_id, r.node_id, r.status) for r in await s.ledger(started.run_id))
        assert sent == [
            ("x", "one", "delivered"),
            ("x", "three", "delivered"),
            ("x", "two", "delivered"),
            ("y", "one", "delivered"),
            ("y", "two", "delivered"),
        ]
        assert result.counts["interaction.custom"] == 2  # e-1 once, e-2 once
        assert result.counts["wait.matched"] == 1
        assert result.counts["wait.timed_out"] == 1
        assert result.counts["profiles"] == 2  # counted before the continue-as-new


async def test_cancel_mid_run_lets_sends_in_flight_settle_and_reports_both(
    scene: SceneFactory,
) -> None:
    async with scene(cohort_size=2, cohort_window=2) as s:
        profiles = [f"c{n}" for n in range(6)]
        for profile in profiles:
            await s.profile(profile)
        # the provider answers slowly: sends are in flight when the cancel comes
        s.sims.apns.set_scenario(Scenario(latency=FixedLatency(ms=2500)))
        definition = journey(
            push("one", next="pause"),
            {"id": "pause", "type": "delay", "duration": "60s", "next": "two"},
            push("two"),
        )
        started = await s.start_journey(definition, profiles)

        async def in_flight() -> bool:
            return any(r.status == "pending" for r in await s.ledger(started.run_id))

        await s.until(in_flight, "sends in flight")
        await cancel_run(s.client, s.db, started.run_id)
        view = await run_view(s.client, s.db, started.run_id)
        assert view.cancelling
        result = await s.finish(started)

        rows = await s.ledger(started.run_id)
        # the two cohorts running at the cancel settled their sends; the third never started
        assert sorted((r.node_id, r.status) for r in rows) == [("one", "delivered")] * 4
        assert result.status == "cancelled"
        assert result.counts["push.delivered"] == 4
        assert result.counts["cancelled"] == 4  # stopped in the delay, before "two"
        async with s.db.read() as session:
            (run,) = (
                await session.exec(select(JourneyRun).where(JourneyRun.id == started.run_id))
            ).all()
        assert run.status == "cancelled"
        assert run.summary["push.delivered"] == 4
