"""Temporal goes down while the app reports interactions and posts a custom event: every report
and the event are accepted and kept, and once Temporal is back (same database file, same port)
each interaction reaches its workflow once and the event starts its triggered journey."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RetryConfig

from tests.inbound.conftest import APP, cohort_counts, outbox, waiting_journey
from tests.scene import scene_on
from tidings.inbound.forwarder import ForwarderOptions, forwarding
from tidings.inbound.triggers import EntryOptions, entry_workflow_id
from tidings.journeys import parse_definition
from tidings.runs.start import activate_trigger
from tidings.sim import Simulators
from tidings.temporal.client import connect
from tidings.temporal.devserver import DevServer, free_port, start_dev_server

PROFILES = 6
FAST = ForwarderOptions(
    idle_interval=timedelta(milliseconds=100),
    initial_backoff=timedelta(milliseconds=200),
    max_backoff=timedelta(seconds=1),
    signal_timeout=timedelta(seconds=2),
)


async def eventually(condition: Callable[[], Awaitable[bool]], what: str, limit_s: float) -> None:
    """Poll until the condition holds; the limit only bounds a broken run, it is no timing
    assertion."""
    for _ in range(int(limit_s * 10)):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"gave up waiting: {what}")


async def test_interactions_posted_while_temporal_is_down_arrive_once_it_is_back(
    tmp_path: Path, database_url: str, sims: Simulators
) -> None:
    home = tmp_path / "temporal"
    port = free_port()
    server: DevServer = await asyncio.to_thread(start_dev_server, home, port=port)
    try:
        client = await connect(server.address)
        # The forwarder's own client gives up on an unreachable server quickly (the default
        # retries for about ten seconds per call), so the test needs no long waits.
        impatient = await Client.connect(
            server.address,
            data_converter=pydantic_data_converter,
            retry_config=RetryConfig(max_elapsed_time_millis=1000, max_retries=3),
        )
        async with (
            scene_on(tmp_path, database_url, client, sims) as scene,
            forwarding(impatient, scene.db, FAST, EntryOptions.of(scene.stack.settings)),
        ):
            stack = scene.stack
            waiting = await waiting_journey(scene, profiles=PROFILES)
            workflows = set(waiting.workflow_of.values())
            triggered = parse_definition(
                {
                    "id": "greet-on-return",
                    "name": "Greet",
                    "app": APP,
                    "trigger": {"event": "returned"},
                    "nodes": [{"id": "hi", "type": "push", "content": {"body": "hi"}}],
                }
            )
            await activate_trigger(stack.db, triggered)

            await asyncio.to_thread(server.stop)
            for tracking in waiting.tracking.values():
                for kind in ("opened", "clicked"):
                    body = {"tracking_id": tracking, "kind": kind}
                    answer = await stack.http.post("/v1/interactions", json=body)
                    assert answer.status_code == 202, answer.text
                # the app retries an open it already reported: accepted, stored once
                again = {"tracking_id": tracking, "kind": "opened"}
                assert (await stack.http.post("/v1/interactions", json=again)).json()["duplicate"]
            event = {"profile_id": "p000", "name": "returned", "event_id": "while-down"}
            assert (await stack.http.post("/v1/events", json=event)).status_code == 202

            async def event_tried_and_kept() -> bool:
                answer = (await stack.http.get("/v1/events/while-down")).json()
                return bool(answer["forward_attempts"] >= 1 and answer["forward_note"])

            async def tried_and_kept() -> bool:
                rows = await outbox(stack)
                return all(r.forward_attempts >= 1 and r.forwarded_at is None for r in rows)

            await eventually(tried_and_kept, "a forward attempt while Temporal is down", 60)
            await eventually(event_tried_and_kept, "the event tried while Temporal is down", 60)
            assert (await stack.http.get("/v1/events/while-down")).json()["forwarding"] == "pending"
            kept = await outbox(stack)
            assert len(kept) == 2 * PROFILES
            assert all(r.last_error for r in kept)

            server = await asyncio.to_thread(start_dev_server, home, port=port)

            async def drained() -> bool:
                return all(r.forwarded_at is not None for r in await outbox(stack))

            await eventually(drained, "the outbox to drain after the restart", 120)
            counts = await cohort_counts(client, workflows)
            # every push's open and click, each applied exactly once
            for kind in ("opened", "clicked"):
                assert sum(c.get(f"interaction.{kind}", 0) for c in counts.values()) == PROFILES
            assert all(r.last_error is None for r in await outbox(stack))

            async def event_forwarded() -> bool:
                answer = (await stack.http.get("/v1/events/while-down")).json()
                return bool(answer["forwarding"] == "forwarded")

            await eventually(event_forwarded, "the event forwarded after the restart", 120)
            answer = (await stack.http.get("/v1/events/while-down")).json()
            assert answer["outcome"]["started"] == [triggered.id]
            entry = client.get_workflow_handle(entry_workflow_id(triggered.id, "p000"))
            await asyncio.wait_for(entry.result(), 60)
            await waiting.run.handle.terminate("test over")
    finally:
        await asyncio.to_thread(server.stop)
