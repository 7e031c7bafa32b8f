"""The interpreter matches an interaction to the send it is about: in a loop that passes the
same push node twice, a late open of the first send does not satisfy the wait after the
second. The cohort workflow runs on Temporal's dev server with a scripted delivery activity
in place of the real one (the interpreter is under test here, not delivery), so the late
open can be made to arrive exactly while the second send is in flight."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.contracts import PushBatch, PushBatchResult
from activities.declarations import DELIVER
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
LOOP = parse_definition(
    {
        "id": "nudges",
        "name": "Nudge until opened",
        "app": "demo",
        "nodes": [
            {"id": "nudge", "type": "push", "content": {"body": "hi"}, "next": "wait"},
            {
                "id": "wait",
                "type": "wait_for",
                "interaction": "opened",
                "push": "nudge",
                "timeout": "1s",
                "matched": "thanks",
                "timed_out": "pause",
            },
            {"id": "pause", "type": "delay", "duration": "200ms", "next": "nudge"},
            {"id": "thanks", "type": "push", "content": {"body": "thanks"}},
        ],
    }
)


class ScriptedDelivery:
    """Delivers every push at once, except the visits held back until released."""

    def __init__(self, held: set[int]) -> None:
        self.calls: list[tuple[str, int]] = []
        self.gates = {visit: asyncio.Event() for visit in held}

    @activity.defn(name=DELIVER)
    async def deliver(self, batch: PushBatch) -> PushBatchResult:
        (visit,) = batch.profiles
        self.calls.append((batch.node_id, visit.visit))
        if batch.node_id == "nudge" and visit.visit in self.gates:
            await self.gates[visit.visit].wait()
        return PushBatchResult(
            targeted={visit.profile_id: 1},
            delivered={visit.profile_id: 1},
            statuses={"delivered": 1},
        )


async def until(check: object, what: str) -> None:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + PATIENCE_S
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.05)


def opened(event_id: str, visit: int | None) -> InteractionBatch:
    return InteractionBatch(
        [
            InteractionEvent(
                event_id=event_id,
                profile_id="ann",
                kind="opened",
                occurred_at=datetime.now(UTC),
                node_id="nudge",
                visit=visit,
            )
        ]
    )


async def counted_opens(handle: WorkflowHandle[CohortWorkflow, CohortResult]) -> int:
    counts = await handle.query(CohortWorkflow.counts)
    return counts.get("interaction.opened", 0)


@asynccontextmanager
async def second_nudge_in_flight(
    client: Client, delivery: ScriptedDelivery
) -> AsyncIterator[WorkflowHandle[CohortWorkflow, CohortResult]]:
    """A cohort of "ann" on LOOP, on a worker of its own, once its second nudge is being
    sent (and held there until the test opens ``delivery.gates[1]``)."""
    queue = f"visits-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[CohortWorkflow], activities=[delivery.deliver]
    ):
        handle = await client.start_workflow(
            CohortWorkflow.run,
            CohortInput("run-visits", LOOP, ["ann"]),
            id=f"run-visits-{uuid.uuid4().hex[:8]}/cohort-000001",
            task_queue=queue,
        )

        async def second_send_in_flight() -> bool:
            return ("nudge", 1) in delivery.calls

        await until(second_send_in_flight, "the second nudge is being sent")
        yield handle


async def test_a_late_open_of_an_earlier_send_does_not_satisfy_the_latest_wait(
    temporal_client: Client,
) -> None:
    delivery = ScriptedDelivery(held={1})
    async with second_nudge_in_flight(temporal_client, delivery) as handle:
        # the first nudge is opened late: while the second is on its way
        await handle.signal(INTERACTIONS_SIGNAL, opened("late", visit=0))

        async def applied() -> bool:
            return await counted_opens(handle) == 1

        await until(applied, "the late open reached the cohort")
        delivery.gates[1].set()

        async def third_send_or_thanks() -> bool:
            return any(call in delivery.calls for call in (("nudge", 2), ("thanks", 0)))

        await until(third_send_or_thanks, "the wait after the second nudge decided")
        assert ("thanks", 0) not in delivery.calls, "the late open was taken for the second's"
        # an open of the latest send is taken
        await handle.signal(INTERACTIONS_SIGNAL, opened("now", visit=2))
        result = await asyncio.wait_for(handle.result(), PATIENCE_S)

    assert delivery.calls == [("nudge", 0), ("nudge", 1), ("nudge", 2), ("thanks", 0)]
    assert result.counts["wait.timed_out"] == 2
    assert result.counts["wait.matched"] == 1
    assert result.counts["interaction.opened"] == 2  # both received, one was the latest's


async def test_an_interaction_without_a_visit_is_taken_for_the_latest_send(
    temporal_client: Client,
) -> None:
    """Rows stored before visits were kept carry none: they count as they always did."""
    delivery = ScriptedDelivery(held={1})
    async with second_nudge_in_flight(temporal_client, delivery) as handle:
        await handle.signal(INTERACTIONS_SIGNAL, opened("unnumbered", visit=None))

        async def applied() -> bool:
            return await counted_opens(handle) == 1

        await until(applied, "the open reached the cohort")
        delivery.gates[1].set()
        result = await asyncio.wait_for(handle.result(), PATIENCE_S)

    assert delivery.calls == [("nudge", 0), ("nudge", 1), ("thanks", 0)]
    assert result.counts["wait.matched"] == 1
