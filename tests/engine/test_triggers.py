"""Triggered journeys: a custom event posted to the API is stored, and the forwarder beside the
worker starts the journey for its profile (a cohort of one, by signal-with-start), under each
re-entry policy."""

from __future__ import annotations

import asyncio
import uuid

from sqlmodel import col, select
from temporalio.client import WorkflowExecutionStatus

from tests.scene import Scene, SceneFactory, journey, push
from tidings.inbound.triggers import entry_workflow_id
from tidings.runs.cancel import cancel_run
from tidings.runs.start import activate_trigger
from tidings.runs.view import run_view
from tidings.sim import Answer, Scenario
from tidings.store.models import JourneyEntry, JourneyRun
from workflows.cohort import CohortWorkflow


def unique(name: str) -> str:
    """Journey ids of their own: entry workflow ids outlive a test on the shared server."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def finished(s: Scene, journey_id: str, profile_id: str) -> None:
    handle = s.client.get_workflow_handle(entry_workflow_id(journey_id, profile_id))
    await asyncio.wait_for(handle.result(), timeout=30)


async def test_events_start_journeys_under_each_reentry_policy(scene: SceneFactory) -> None:
    async with scene() as s:
        await s.profile("ann")
        ids = {name: unique(name) for name in ("onboarding", "once", "hourly", "quick")}
        # onboarding waits until the profile finishes it: its entry runs until we say so
        onboarding = journey(
            push("welcome", next="wait"),
            {"id": "wait", "type": "wait_for", "event": "finished_onboarding", "timeout": "1h"},
            id=ids["onboarding"],
            trigger={"event": "signed_up", "reentry": {"policy": "after_completion"}},
        )
        once = journey(push("hello"), id=ids["once"], trigger={"event": "signed_up"})
        hourly = journey(
            push("hi"),
            id=ids["hourly"],
            trigger={"event": "signed_up", "reentry": {"policy": "after", "after": "1h"}},
        )
        quick = journey(
            push("yo"),
            id=ids["quick"],
            trigger={"event": "signed_up", "reentry": {"policy": "after", "after": "2s"}},
        )
        runs = {
            name: (await activate_trigger(s.db, d)).run_id
            for name, d in (("onboarding", onboarding), ("once", once), ("hourly", hourly))
        }

        first = await s.event("ann", "signed_up")
        assert sorted(first["started"]) == sorted(ids[n] for n in ("hourly", "onboarding", "once"))
        await finished(s, ids["once"], "ann")
        await finished(s, ids["hourly"], "ann")
        # once: never again; hourly: not within the hour; onboarding: its entry still runs
        second = await s.event("ann", "signed_up")
        assert second["started"] == []
        assert (await s.event("ann", "finished_onboarding"))["signalled"] == 1
        await finished(s, ids["onboarding"], "ann")
        third = await s.event("ann", "signed_up")
        assert third["started"] == [ids["onboarding"]]

        runs["quick"] = (await activate_trigger(s.db, quick)).run_id
        assert (await s.event("ann", "signed_up"))["started"] == [ids["quick"]]
        await finished(s, ids["quick"], "ann")
        await asyncio.sleep(2.5)
        assert (await s.event("ann", "signed_up"))["started"] == [ids["quick"]]
        await finished(s, ids["quick"], "ann")
        await s.event("ann", "finished_onboarding")
        await finished(s, ids["onboarding"], "ann")

        async def visits(journey_id: str) -> list[int]:
            rows = await s.ledger(runs[journey_id])
            return sorted(r.visit for r in rows if r.status == "delivered")

        assert await visits("onboarding") == [0, 1]  # each entry sends once
        assert await visits("once") == [0]
        assert await visits("hourly") == [0]
        assert await visits("quick") == [0, 1]
        async with s.db.read() as session:
            entries = {
                e.journey_id: e.entries
                for e in (
                    await session.exec(
                        select(JourneyEntry).where(col(JourneyEntry.profile_id) == "ann")
                    )
                ).all()
            }
        assert entries == {ids["onboarding"]: 2, ids["once"]: 1, ids["hourly"]: 1, ids["quick"]: 2}


async def test_the_events_api_stores_first_and_says_what_is_wrong(scene: SceneFactory) -> None:
    async with scene() as s:
        await s.profile("bea")
        greet = unique("greet")
        await activate_trigger(s.db, journey(push("hello"), id=greet, trigger={"event": "joined"}))
        body = {"profile_id": "bea", "name": "joined", "event_id": "e-1"}
        first = await s.stack.http.post("/v1/events", json=body)
        assert first.status_code == 202
        # stored and answered; the forwarder beside the worker starts the journey
        assert (first.json()["duplicate"], first.json()["started"]) == (False, [])
        assert (await s.forwarded("e-1"))["started"] == [greet]
        again = await s.stack.http.post("/v1/events", json=body)
        assert again.status_code == 202
        assert again.json()["duplicate"]
        assert again.json()["forwarded"]
        assert again.json()["started"] == []
        other = await s.stack.http.post("/v1/events", json=body | {"name": "left"})
        assert other.status_code == 409
        assert "e-1" in other.json()["error"]["message"]
        unknown = await s.stack.http.post("/v1/events", json=body | {"profile_id": "nobody"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "unknown_profile"
        bad = await s.stack.http.post("/v1/events", json=body | {"name": "has spaces"})
        assert bad.status_code == 422
        await finished(s, greet, "bea")


async def test_cancelling_a_triggered_run_waits_for_its_entries_to_settle(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        (slow_token,) = await s.profile("slow")
        await s.profile("waiting")
        await s.profile("late")
        # slow's provider takes its time: its push is in flight when the cancel comes
        s.sims.apns.set_scenario(Scenario(scripted={slow_token: [Answer(latency_ms=2500)]}))
        definition = journey(
            push("hello", next="pause"),
            {"id": "pause", "type": "delay", "duration": "60s", "next": "again"},
            push("again"),
            id=unique("cancelled"),
            trigger={"event": "joined"},
        )
        run_id = (await activate_trigger(s.db, definition)).run_id
        await s.event("waiting", "joined")
        await s.delivered(run_id, "hello", "waiting")
        await s.event("slow", "joined")

        async def in_flight() -> bool:
            return any(r.status == "pending" for r in await s.ledger(run_id))

        await s.until(in_flight, "slow's push in flight")
        cancelling = asyncio.create_task(cancel_run(s.client, s.db, run_id))

        async def shown_as_cancelling() -> bool:
            return (await run_view(s.client, s.db, run_id)).cancelling

        await s.until(shown_as_cancelling, "the run shown as cancelling")
        outcome = await asyncio.wait_for(cancelling, timeout=30)

        assert outcome.cohorts_signalled == 2
        # when the cancel returns, every entry has closed and its sends have settled
        for profile in ("slow", "waiting"):
            handle = s.client.get_workflow_handle_for(
                CohortWorkflow.run, entry_workflow_id(definition.id, profile)
            )
            assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
            assert (await handle.result()).counts["cancelled"] == 1
        rows = await s.ledger(run_id)
        assert sorted((r.profile_id, r.node_id, r.status) for r in rows) == [
            ("slow", "hello", "delivered"),
            ("waiting", "hello", "delivered"),
        ]
        async with s.db.read() as session:
            run = await session.get(JourneyRun, run_id)
        assert run is not None
        assert run.status == "cancelled"
        # the funnel was written after the in-flight send settled: it counts it
        assert run.summary["push.delivered"] == 2
        assert run.summary["pushes_sent"] == 2
        view = await run_view(s.client, s.db, run_id)
        assert (view.status, view.cancelling) == ("cancelled", False)
        # the activation takes no new entries
        assert (await s.event("late", "joined"))["started"] == []


async def test_a_triggered_send_runs_locally_and_is_retried_once_after_retry_after(
    scene: SceneFactory,
) -> None:
    """A triggered entry's send is a local activity (no activity task events in its
    history); Temporal still retries it, honouring Retry-After, and the ledger keeps the
    retry to the one device that needs it."""
    async with scene() as s:
        (token,) = await s.profile("rio")
        s.sims.apns.set_scenario(
            Scenario(
                scripted={token: [Answer(status=503, reason="ServiceUnavailable", retry_after_s=1)]}
            )
        )
        definition = journey(push("hello"), id=unique("local"), trigger={"event": "joined"})
        run_id = (await activate_trigger(s.db, definition)).run_id
        await s.event("rio", "joined")
        await finished(s, definition.id, "rio")

        (row,) = await s.ledger(run_id)
        assert (row.status, row.attempts) == ("delivered", 2)
        answers = s.sims.apns.records(token=token)
        assert [r.status for r in answers] == [503, 200]
        # at least the second answer came a Retry-After later
        assert answers[1].received_at - answers[0].received_at >= 1.0
        history = await s.client.get_workflow_handle(
            entry_workflow_id(definition.id, "rio")
        ).fetch_history()
        kinds = {event.WhichOneof("attributes") for event in history.events}
        assert "activity_task_scheduled_event_attributes" not in kinds
        assert "marker_recorded_event_attributes" in kinds
