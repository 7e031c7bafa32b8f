"""Custom events through the one forwarder beside the worker: the API stores them, the
forwarder signals them to running journeys that wait for them (batched with interactions)
and starts the journeys they trigger; a forwarder that lost its marks forwards again without
anything applied twice."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import delete, update
from sqlmodel import col

from tests.scene import Scene, SceneFactory, journey, push
from tidings.inbound.triggers import entry_workflow_id
from tidings.runs.start import activate_trigger
from tidings.store.models import CustomEvent, JourneyEntry


def waiting_for(event: str) -> dict[str, object]:
    return {
        "id": "wait",
        "type": "wait_for",
        "event": event,
        "timeout": "1h",
        "matched": "thanks",
        "timed_out": "reminder",
    }


async def forget_forwarding(s: Scene, event_id: str) -> None:
    """What a forwarder killed after telling Temporal, before its commit, leaves behind."""
    async with s.db.write() as session:
        await session.exec(
            update(CustomEvent)
            .where(col(CustomEvent.event_id) == event_id)
            .values(forwarded_at=None, outcome=None)
        )
        await session.exec(delete(JourneyEntry))


async def test_an_event_reaches_a_waiting_journey_and_starts_a_triggered_one(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        await s.profile("ann")
        event = f"upgraded-{uuid.uuid4().hex[:6]}"
        waiting = journey(
            push("hello", next="wait"), waiting_for(event), push("thanks"), push("reminder")
        )
        triggered = journey(push("welcome"), trigger={"event": event})
        await activate_trigger(s.db, triggered)
        started = await s.start_journey(waiting, ["ann"])
        await s.delivered(started.run_id, "hello", "ann")

        outcome = await s.event("ann", event)

        assert outcome["started"] == [triggered.id]
        assert outcome["signalled"] == 1
        assert outcome["skipped"] == {}
        result = await s.finish(started)
        assert result.counts["push.delivered"] == 2
        rows = await s.ledger(started.run_id)
        assert sorted(r.node_id for r in rows) == ["hello", "thanks"]
        handle = s.client.get_workflow_handle(entry_workflow_id(triggered.id, "ann"))
        await asyncio.wait_for(handle.result(), timeout=30)


async def test_a_forwarder_that_lost_its_marks_applies_nothing_twice(scene: SceneFactory) -> None:
    async with scene() as s:
        await s.profile("bo")
        event = f"joined-{uuid.uuid4().hex[:6]}"
        done = f"done-{uuid.uuid4().hex[:6]}"
        triggered = journey(
            push("welcome", next="wait"),
            waiting_for(done),
            push("thanks"),
            push("reminder"),
            trigger={"event": event, "reentry": {"policy": "after_completion"}},
        )
        run_id = (await activate_trigger(s.db, triggered)).run_id
        entry = s.client.get_workflow_handle(entry_workflow_id(triggered.id, "bo"))
        assert (await s.event("bo", event, event_id="e-join"))["started"] == [triggered.id]
        await s.delivered(run_id, "welcome", "bo")
        first_run = (await entry.describe()).run_id

        # the trigger is forwarded again, its entry forgotten too: signal-with-start finds
        # the entry running and signals it instead, which applies the event once
        await forget_forwarding(s, "e-join")
        await s.forwarded("e-join")
        assert (await entry.describe()).run_id == first_run

        # the event the entry waits for is signalled twice: the entry applies it once
        assert (await s.event("bo", done, event_id="e-done"))["signalled"] == 1
        await forget_forwarding(s, "e-done")
        await s.forwarded("e-done")
        await asyncio.wait_for(entry.result(), timeout=30)
        rows = await s.ledger(run_id)
        assert sorted((r.node_id, r.status) for r in rows) == [
            ("thanks", "delivered"),
            ("welcome", "delivered"),
        ]
        assert (await entry.describe()).run_id == first_run
