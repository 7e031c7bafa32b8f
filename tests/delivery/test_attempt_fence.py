"""Two executions of one batch at once. Temporal starts a new attempt when an older one's
heartbeats stopped reaching it (its server restarted, its worker cut off), or runs a local
activity's attempt again after its workflow task was lost, while the older execution may
still be sending. The batch's send fence lets one execution send at a time: the other waits
while the holder is alive and takes over once it has ended or its fence has gone stale (a
dead holder); a holder that lost its fence stops at its next group commit. A cancelled
execution sends nothing more, records the answers to the requests it had in flight, and
gives the fence up, so the next one sends only what was never sent."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import select
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import ProfileVisit, PushBatch
from activities.delivery import DeliveryActivities
from tests.scene import Scene, apns_token, delivery_scene, direct_delivery
from tidings.journeys.model import PushContent
from tidings.sim import FixedLatency, Scenario, Simulators
from tidings.store.fences import FENCE_LEASE, AttemptFence, take_fence
from tidings.store.models import SendFence
from tidings.store.types import utcnow

DEVICES = 30
IN_FLIGHT = 4


def attempt_env(attempt: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return env


@pytest.mark.parametrize("second_attempt", [1, 2], ids=["same-attempt", "next-attempt"])
async def test_a_second_execution_waits_for_the_live_one_and_nothing_is_sent_twice(
    tmp_path: Path,
    database_url: str,
    temporal_client: Client,
    sims: Simulators,
    second_attempt: int,
) -> None:
    async with delivery_scene(
        tmp_path, database_url, temporal_client, sims, send_concurrency=IN_FLIGHT
    ) as scene:
        delivery, batch = await slow_batch(scene)
        first = asyncio.create_task(attempt_env(1).run(delivery.deliver, batch))
        await until_received(scene, IN_FLIGHT)
        second = asyncio.create_task(attempt_env(second_attempt).run(delivery.deliver, batch))
        results = await asyncio.wait_for(asyncio.gather(first, second), timeout=60)

        assert [r.statuses for r in results] == [{"delivered": DEVICES}] * 2
        assert copies(scene) == [1] * DEVICES
        assert await fences(scene) == []


async def test_an_execution_takes_over_a_fence_gone_stale_and_the_holder_stops(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    """A holder that kept its fence fresh for less than the lease (starved of CPU that long)
    is taken for dead: the next execution takes over, and the holder stops at its next group
    commit, having sent twice at most what it had in flight."""
    async with delivery_scene(
        tmp_path, database_url, temporal_client, sims, send_concurrency=IN_FLIGHT
    ) as scene:
        delivery, batch = await slow_batch(scene, latency_ms=1000)
        older = asyncio.create_task(attempt_env(1).run(delivery.deliver, batch))
        await until_received(scene, IN_FLIGHT)
        await age_fences(scene)
        newer = asyncio.create_task(attempt_env(2).run(delivery.deliver, batch))
        with pytest.raises(ApplicationError) as stopped:
            await asyncio.wait_for(older, timeout=60)
        assert stopped.value.type == "AttemptSuperseded"
        assert received(scene) < DEVICES, "the older execution went on sending the whole batch"

        result = await asyncio.wait_for(newer, timeout=60)
        assert result.statuses == {"delivered": DEVICES}
        sent = copies(scene)
        assert min(sent) == 1
        assert sum(sent) - DEVICES <= IN_FLIGHT
        assert await fences(scene) == []


async def test_a_fence_left_by_a_dead_execution_holds_the_batch_until_it_is_stale(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    """A worker killed mid-batch leaves its fence: the next execution sends nothing while
    that fence is fresh, and takes the batch once it is stale."""
    async with delivery_scene(
        tmp_path, database_url, temporal_client, sims, send_concurrency=IN_FLIGHT
    ) as scene:
        delivery, batch = await slow_batch(scene, latency_ms=0)
        env = attempt_env(2)
        dead = AttemptFence(env.info.workflow_run_id or "", env.info.activity_id, 1)
        async with scene.stack.resources.db.write() as session:
            assert await take_fence(session, dead, utcnow())
        waiting = asyncio.create_task(env.run(delivery.deliver, batch))
        # a deadline for what the waiting execution might wrongly do, not a timing assertion
        await asyncio.sleep(2)
        assert not waiting.done()
        assert received(scene) == 0

        await age_fences(scene)
        result = await asyncio.wait_for(waiting, timeout=60)
        assert result.statuses == {"delivered": DEVICES}
        assert copies(scene) == [1] * DEVICES
        assert await fences(scene) == []


async def test_a_cancelled_execution_records_its_requests_in_flight_and_sends_no_more(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    """Cancelled mid-batch (its heartbeat learnt it was timed out, or its worker stops): it
    starts no more requests, waits for the answers to those in flight and records them, and
    ends cancelled; the next attempt sends each of the rest once."""
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
        # every request the simulator received was answered and is recorded
        assert len(delivered) == sent
        assert await fences(scene) == []

        await attempt_env(2).run(delivery.deliver, batch)
        assert copies(scene) == [1] * DEVICES


def received(scene: Scene) -> int:
    return sum(len(scene.sims.apns.records(token=apns_token(n))) for n in range(DEVICES))


def copies(scene: Scene) -> list[int]:
    """Pushes accepted per device."""
    return [len(scene.sims.apns.accepted(token=apns_token(n))) for n in range(DEVICES)]


async def fences(scene: Scene) -> list[SendFence]:
    async with scene.stack.resources.db.read() as session:
        return list((await session.exec(select(SendFence))).all())


async def age_fences(scene: Scene) -> None:
    """Every fence as its holder would leave it had it stopped refreshing a lease ago."""
    async with scene.stack.resources.db.write() as session:
        await session.exec(
            update(SendFence).values(updated_at=utcnow() - FENCE_LEASE - FENCE_LEASE)
        )


async def until_received(scene: Scene, requests: int) -> None:
    # a deadline for what runs in the background, never a timing assertion
    for _ in range(1500):
        if received(scene) >= requests:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"the simulator never received {requests} requests")


async def slow_batch(scene: Scene, latency_ms: int = 300) -> tuple[DeliveryActivities, PushBatch]:
    """A batch of DEVICES iOS devices whose answers take ``latency_ms`` each: seconds to
    send, IN_FLIGHT at a time."""
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
    if latency_ms:
        scene.sims.apns.set_scenario(Scenario(latency=FixedLatency(ms=latency_ms)))
    return delivery, batch
