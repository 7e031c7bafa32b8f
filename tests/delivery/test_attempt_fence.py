"""Two attempts of one batch at once: Temporal starts a new attempt when an older one's
heartbeats stopped reaching it (its server restarted, its worker cut off), while the older
one may still be sending. The newer attempt takes the batch's send fence; the older one sees
it at its next group commit and stops, so only its requests in flight are sent twice."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import ProfileVisit, PushBatch
from activities.delivery import DeliveryActivities
from tests.scene import Scene, apns_token, delivery_scene, direct_delivery
from tidings.journeys.model import PushContent
from tidings.sim import FixedLatency, Scenario, Simulators
from tidings.store.fences import AttemptFence, holds_fence, take_fence
from tidings.store.types import utcnow

DEVICES = 30
IN_FLIGHT = 4


def attempt_env(attempt: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return env


async def test_an_older_attempt_stops_sending_once_a_newer_one_starts(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    async with delivery_scene(
        tmp_path, database_url, temporal_client, sims, send_concurrency=IN_FLIGHT
    ) as scene:
        await two_attempts(scene)


async def test_a_cancelled_attempt_records_the_answers_it_had(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    """Cancelled mid-batch (its heartbeat learnt it was timed out, or the worker stops): it
    ends cancelled, what it learnt stays recorded, and the next attempt resends at most what
    was in flight."""
    async with delivery_scene(
        tmp_path, database_url, temporal_client, sims, send_concurrency=IN_FLIGHT
    ) as scene:
        delivery, batch = await slow_batch(scene)
        env = attempt_env(1)
        sending = asyncio.create_task(env.run(delivery.deliver, batch))
        await until_received(scene, 3 * IN_FLIGHT)
        env.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(sending, timeout=30)
        sent = received(scene)
        assert sent < DEVICES
        delivered = [r for r in await scene.ledger(batch.run_id) if r.status == "delivered"]
        # every request the simulator answered, but those still in flight, is recorded
        assert len(delivered) >= sent - IN_FLIGHT

        await attempt_env(2).run(delivery.deliver, batch)
        copies = [len(scene.sims.apns.accepted(token=apns_token(n))) for n in range(DEVICES)]
        assert min(copies) == 1
        assert sum(copies) - DEVICES <= IN_FLIGHT


def received(scene: Scene) -> int:
    return sum(len(scene.sims.apns.records(token=apns_token(n))) for n in range(DEVICES))


async def until_received(scene: Scene, requests: int) -> None:
    # a deadline for what runs in the background, never a timing assertion
    for _ in range(1500):
        if received(scene) >= requests:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"the simulator never received {requests} requests")


async def slow_batch(scene: Scene) -> tuple[DeliveryActivities, PushBatch]:
    """A batch of DEVICES iOS devices whose answers take 300 ms each: seconds to send."""
    app = await scene.add_app()
    for n in range(DEVICES):
        await scene.add_device(app, f"p{n}", "apns", apns_token(n), attributes={"first_name": "A"})
    delivery = direct_delivery(scene)
    batch = PushBatch(
        run_id="run-fence",
        journey_id="fence",
        workflow_id="run-fence/cohort-000001",
        node_id="push",
        app_id=app,
        content=PushContent(title="t"),
        ttl_s=3600,
        reached_at=datetime.now(UTC),
        profiles=[ProfileVisit(f"p{n}") for n in range(DEVICES)],
    )
    scene.sims.apns.set_scenario(Scenario(latency=FixedLatency(ms=300)))
    return delivery, batch


async def two_attempts(scene: Scene) -> None:
    delivery, batch = await slow_batch(scene)
    resources = scene.stack.resources
    older = attempt_env(1)
    sending = asyncio.create_task(older.run(delivery.deliver, batch))
    await until_received(scene, IN_FLIGHT)
    # Temporal starts attempt 2 while attempt 1 still runs
    newer = AttemptFence(older.info.workflow_run_id or "", older.info.activity_id, 2)
    async with resources.db.write() as session:
        assert await take_fence(session, newer, utcnow())
    with pytest.raises(ApplicationError) as stopped:
        await asyncio.wait_for(sending, timeout=30)
    assert stopped.value.type == "AttemptSuperseded"
    sent_by_older = received(scene)
    assert sent_by_older < DEVICES, "the older attempt went on sending the whole batch"
    async with resources.db.read() as session:
        older_fence = dataclasses.replace(newer, attempt=1)
        assert not await holds_fence(session, older_fence)

    result = await attempt_env(2).run(delivery.deliver, batch)
    assert result.statuses == {"delivered": DEVICES}
    copies = [len(scene.sims.apns.accepted(token=apns_token(n))) for n in range(DEVICES)]
    assert min(copies) == 1
    # sent twice: at most what the older attempt had in flight when it stopped
    assert sum(copies) - DEVICES <= IN_FLIGHT
    # the batch is done: its fence is gone
    async with resources.db.read() as session:
        assert not await holds_fence(session, newer)
