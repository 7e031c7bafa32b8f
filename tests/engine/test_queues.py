"""Delivery on a task queue of its own: the interpreter and the delivery activities are
separate Temporal workers (in one process by default, in separate processes with
`tidings worker --queues ...`), and the default keeps one queue."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.scene import SceneFactory, journey, push
from tidings.inbound.triggers import entry_workflow_id
from tidings.runs.start import activate_trigger
from tidings.settings import Settings
from tidings.worker.resources import (
    QueueChoiceError,
    build_workers,
    engine_options,
)


def scheduled_queues(history: Any) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.task_queue.name
        for event in history.events
        if event.WhichOneof("attributes") == "activity_task_scheduled_event_attributes"
        and event.activity_task_scheduled_event_attributes.activity_type.name
        == "tidings.delivery.deliver"
    ]


async def test_a_broadcast_sends_through_the_delivery_queue_and_a_trigger_locally(
    scene: SceneFactory,
) -> None:
    delivery_queue = f"tidings-delivery-{uuid.uuid4().hex[:8]}"
    async with scene(delivery_task_queue=delivery_queue) as s:
        for name in ("ann", "bob"):
            await s.profile(name, devices=("apns", "fcm"))
        started = await s.start_journey(journey(push("hello")), ["ann", "bob"])
        await s.finish(started)
        rows = await s.ledger(started.run_id)
        assert [r.status for r in rows] == ["delivered"] * 4
        cohort = s.client.get_workflow_handle(f"{started.run_id}/cohort-000001")
        assert scheduled_queues(await cohort.fetch_history()) == [delivery_queue]

        # a triggered entry sends through a local activity, in its workflow's worker
        definition = journey(push("hi"), id=f"t-{uuid.uuid4().hex[:8]}", trigger={"event": "j"})
        run_id = (await activate_trigger(s.db, definition)).run_id
        await s.event("ann", "j")
        handle = s.client.get_workflow_handle(entry_workflow_id(definition.id, "ann"))
        await handle.result()
        assert [r.status for r in await s.ledger(run_id)] == ["delivered"] * 2


async def test_the_default_is_one_queue_and_one_worker(scene: SceneFactory) -> None:
    async with scene() as s:
        assert engine_options(s.stack.settings).delivery_task_queue is None
        await s.profile("cy")
        started = await s.start_journey(journey(push("hello")), ["cy"])
        await s.finish(started)
        cohort = s.client.get_workflow_handle(f"{started.run_id}/cohort-000001")
        assert scheduled_queues(await cohort.fetch_history()) == [s.stack.settings.task_queue]


def test_roles_apart_need_a_queue_of_their_own(tmp_path: Any) -> None:
    nothing: Any = None  # refused before anything is built
    shared = Settings(_env_file=None, home=tmp_path)
    with pytest.raises(QueueChoiceError, match="TIDINGS_DELIVERY_TASK_QUEUE"):
        build_workers(nothing, shared, nothing, ["delivery"])
    with pytest.raises(QueueChoiceError, match="TIDINGS_DELIVERY_TASK_QUEUE"):
        build_workers(nothing, shared, nothing, ["interpreter"])
    apart = Settings(_env_file=None, home=tmp_path, delivery_task_queue="sends")
    assert apart.delivery_queue == "sends"
    with pytest.raises(QueueChoiceError, match="interpreter, delivery or both"):
        build_workers(nothing, apart, nothing, ["sending"])
