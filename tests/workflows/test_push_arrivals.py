"""The push node tells the delivery activity when each profile reached it: profiles held
together for quiet hours, having arrived at different times, go out in one batch per arrival,
each visit carrying its arrival (the TTL's start) and the batch the time of the send. The
cohort workflow runs on Temporal's dev server with recording activities in place of the real
ones: what the interpreter asks for is under test here."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.contracts import (
    PushBatch,
    PushBatchResult,
    RecordJourneyEvents,
)
from activities.declarations import DELIVER, RECORD_JOURNEY_EVENTS
from tidings.journeys import parse_definition
from workflows.cohort import CohortWorkflow
from workflows.contracts import (
    INTERACTIONS_SIGNAL,
    CohortInput,
    CohortResult,
    InteractionBatch,
    InteractionEvent,
)

PATIENCE_S = 30.0


class Recorder:
    def __init__(self) -> None:
        self.batches: list[PushBatch] = []

    @activity.defn(name=DELIVER)
    async def deliver(self, batch: PushBatch) -> PushBatchResult:
        self.batches.append(batch)
        ids = [visit.profile_id for visit in batch.profiles]
        return PushBatchResult(
            targeted=dict.fromkeys(ids, 1),
            delivered=dict.fromkeys(ids, 1),
            statuses={"delivered": len(ids)},
        )

    @activity.defn(name=RECORD_JOURNEY_EVENTS)
    async def record(self, events: RecordJourneyEvents) -> None:
        return None


async def postponed(handle: WorkflowHandle[CohortWorkflow, CohortResult], number: int) -> None:
    deadline = asyncio.get_running_loop().time() + PATIENCE_S
    while (await handle.query(CohortWorkflow.counts)).get("postponed", 0) < number:
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"never held {number} profiles for quiet hours")
        await asyncio.sleep(0.05)


def go(profile_id: str) -> InteractionBatch:
    return InteractionBatch(
        [InteractionEvent(f"go-{profile_id}", profile_id, "custom", datetime.now(UTC), name="go")]
    )


async def test_profiles_held_together_are_sent_per_arrival_with_their_arrival_times(
    temporal_client: Client,
) -> None:
    now = datetime.now(UTC)
    journey = parse_definition(
        {
            "id": "arrivals",
            "name": "Arrivals",
            "app": "demo",
            "nodes": [
                {
                    "id": "wait",
                    "type": "wait_for",
                    "event": "go",
                    "timeout": "30s",
                    "matched": "hello",
                },
                {"id": "hello", "type": "push", "content": {"body": "hi"}, "ttl": "1h"},
            ],
            "quiet_hours": {
                "start": (now - timedelta(hours=1)).strftime("%H:%M:%S"),
                "end": (now + timedelta(seconds=3)).strftime("%H:%M:%S"),
            },
        }
    )
    recorder = Recorder()
    queue = f"arrivals-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client,
        task_queue=queue,
        workflows=[CohortWorkflow],
        activities=[recorder.deliver, recorder.record],
    ):
        handle = await temporal_client.start_workflow(
            CohortWorkflow.run,
            CohortInput("run-arrivals", journey, ["a", "b"]),
            id=f"run-arrivals-{uuid.uuid4().hex[:8]}/cohort-000001",
            task_queue=queue,
        )
        await handle.signal(INTERACTIONS_SIGNAL, go("a"))
        await postponed(handle, 1)
        await handle.signal(INTERACTIONS_SIGNAL, go("b"))
        await postponed(handle, 2)
        result = await asyncio.wait_for(handle.result(), PATIENCE_S)

    assert result.counts["push.delivered"] == 2
    first, second = recorder.batches
    assert [v.profile_id for v in first.profiles] == ["a"]
    assert [v.profile_id for v in second.profiles] == ["b"]
    (a,), (b,) = first.profiles, second.profiles
    assert a.reached_at is not None
    assert b.reached_at is not None
    assert a.reached_at < b.reached_at  # each its own arrival, the TTL's start
    # both went out when the window ended, after both had arrived
    assert first.reached_at == second.reached_at
    assert first.reached_at > b.reached_at
