"""The outbox forwarder: stored interactions reach their cohort as one signal per workflow,
each applied once; events for finished workflows drain with a note; PostgreSQL forwarders
take disjoint batches; a backend's own Temporal client can record and signal directly."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.api.conftest import sent_push
from tests.inbound.conftest import APP, cohort_counts, outbox, waiting_journey
from tests.scene import scene_on
from tidings.inbound.forwarder import (
    Forwarder,
    ForwarderOptions,
    Round,
    pause_after,
    record_and_signal,
)
from tidings.sim import Simulators
from tidings.store.db import Database
from tidings.store.interactions import InteractionReport, record_interaction, unforwarded
from tidings.store.models import App, Interaction, InteractionKind


async def signals_received(client: Client, workflow_id: str) -> int:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return sum(
        1
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    )


async def test_interactions_reach_their_cohort_once_in_one_signal_per_workflow(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    async with scene_on(tmp_path, database_url, temporal_client, sims, cohort_size=4) as scene:
        stack = scene.stack
        waiting = await waiting_journey(scene, profiles=10)
        workflows = set(waiting.workflow_of.values())
        assert len(workflows) == 3  # cohorts of 4, 4 and 2
        for profile, tracking in waiting.tracking.items():
            reports = [{"kind": "opened"}, {"kind": "opened"}]  # the second is a duplicate
            if profile < "p005":
                reports.append({"kind": "clicked", "action_id": "buy"})
            for report in reports:
                answer = await stack.http.post(
                    "/v1/interactions", json={"tracking_id": tracking} | report
                )
                assert answer.status_code == 202, answer.text

        forwarder = Forwarder(temporal_client, stack.db)
        done = await forwarder.forward_once()
        assert (done.claimed, done.forwarded, done.failed) == (15, 15, 0)
        assert all(row.forwarded_at is not None for row in await outbox(stack))
        assert (await forwarder.forward_once()).claimed == 0
        counts = await cohort_counts(temporal_client, workflows)
        assert sum(c.get("interaction.opened", 0) for c in counts.values()) == 10
        assert sum(c.get("interaction.clicked", 0) for c in counts.values()) == 5
        for workflow_id in workflows:
            assert await signals_received(temporal_client, workflow_id) == 1
            mine = Counter(w for w in waiting.workflow_of.values() if w == workflow_id)
            assert counts[workflow_id]["interaction.opened"] == mine[workflow_id]

        # a crash after signalling and before marking sends the rows again: still once
        async with stack.db.write() as session:
            await session.exec(update(Interaction).values(forwarded_at=None))
        assert (await forwarder.forward_once()).forwarded == 15
        assert await cohort_counts(temporal_client, workflows) == counts
        await waiting.run.handle.terminate("test over")


def test_a_busy_round_is_followed_by_a_longer_pause_and_a_backlog_by_none() -> None:
    options = ForwarderOptions(
        busy_rows=100, idle_interval=timedelta(seconds=0.5), busy_interval=timedelta(seconds=3)
    )
    assert pause_after(Round(interactions=99), options) == 0.5
    assert pause_after(Round(interactions=100), options) == 3.0
    assert pause_after(Round(interactions=10_000, full=True), options) == 0.0


async def test_under_load_a_workflow_s_interactions_gather_into_fewer_signals(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    """A round that took busy_rows interactions or more is followed by busy_interval: what
    arrives meanwhile waits and goes out together, in one signal per workflow."""
    async with scene_on(tmp_path, database_url, temporal_client, sims, cohort_size=10) as scene:
        stack = scene.stack
        waiting = await waiting_journey(scene, profiles=10)
        (workflow_id,) = set(waiting.workflow_of.values())

        async def report_all(kind: str) -> None:
            for tracking in waiting.tracking.values():
                answer = await stack.http.post(
                    "/v1/interactions", json={"tracking_id": tracking, "kind": kind}
                )
                assert answer.status_code == 202, answer.text

        async def forwarded() -> int:
            return sum(1 for row in await outbox(stack) if row.forwarded_at is not None)

        options = ForwarderOptions(
            busy_rows=10,
            idle_interval=timedelta(milliseconds=50),
            busy_interval=timedelta(seconds=6),
        )
        stop = asyncio.Event()
        await report_all("delivered")
        running = asyncio.create_task(Forwarder(temporal_client, stack.db, options).run(stop))
        try:
            await scene.until(lambda: _equals(forwarded(), 10), "the first ten forwarded")
            await report_all("opened")
            # an idle forwarder would have taken these within 50 ms, many times over
            await asyncio.sleep(2)
            assert await forwarded() == 10
            await scene.until(lambda: _equals(forwarded(), 20), "the next ten forwarded")
        finally:
            stop.set()
            await running
        assert await signals_received(temporal_client, workflow_id) == 2
        counts = await cohort_counts(temporal_client, {workflow_id})
        assert counts[workflow_id]["interaction.opened"] == 10
        await waiting.run.handle.terminate("test over")


async def _equals(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def test_events_for_a_finished_workflow_drain_with_a_note(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    async with scene_on(tmp_path, database_url, temporal_client, sims) as scene:
        stack = scene.stack
        waiting = await waiting_journey(scene, profiles=2, delay="1s")
        await waiting.run.handle.result()
        for tracking in waiting.tracking.values():
            body = {"tracking_id": tracking, "kind": "opened"}
            assert (await stack.http.post("/v1/interactions", json=body)).status_code == 202
        done = await Forwarder(temporal_client, stack.db).forward_once()
        assert (done.gone, done.failed) == (2, 0)
        rows = await outbox(stack)
        assert all(r.forwarded_at is not None for r in rows)
        assert all("no longer runs" in (r.last_error or "") for r in rows)
        listed = (await stack.http.get("/v1/interactions")).json()["items"]
        assert all("no longer runs" in i["forward_note"] for i in listed)


async def test_postgres_forwarders_claim_disjoint_batches(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite has one writer: its forwarder reads without locking")
    now = datetime.now(UTC)
    async with db.write() as session:
        session.add(App(id=APP, name="F", credentials_version=1))
    tracking = await sent_push(db, app_id=APP, profile_id="p")
    async with db.write() as session:
        for n in range(6):
            await record_interaction(
                session,
                InteractionReport(f"e{n}", tracking, InteractionKind.OPENED, None, now, "api"),
                now,
            )
    first_done = asyncio.Event()
    release = asyncio.Event()
    claimed: dict[str, list[str]] = {}

    async def claim(name: str, limit: int) -> None:
        async with db.write() as session:
            rows = await unforwarded(session, limit, lock=True)
            claimed[name] = [r.event_id for r in rows]
            if name == "first":
                first_done.set()
                await release.wait()

    first = asyncio.create_task(claim("first", 4))
    await first_done.wait()
    await claim("second", 10)
    release.set()
    await first
    assert claimed == {"first": ["e0", "e1", "e2", "e3"], "second": ["e4", "e5"]}


async def test_a_backend_with_its_own_temporal_client_records_and_signals(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    async with scene_on(tmp_path, database_url, temporal_client, sims) as scene:
        stack = scene.stack
        waiting = await waiting_journey(scene, profiles=1)
        [(profile, tracking)] = waiting.tracking.items()
        report = InteractionReport(
            event_id="backend-1",
            tracking_id=tracking,
            kind=InteractionKind.CLICKED,
            action_id="open-cart",
            occurred_at=datetime.now(UTC),
            source="backend",
        )
        row = await record_and_signal(temporal_client, stack.db, report)
        assert row.forwarded_at is not None
        again = await record_and_signal(temporal_client, stack.db, report)
        assert again.id == row.id
        [stored] = await outbox(stack)
        assert (stored.source, stored.action_id, stored.profile_id) == (
            "backend",
            "open-cart",
            profile,
        )
        counts = await cohort_counts(temporal_client, {waiting.workflow_of[profile]})
        assert counts[waiting.workflow_of[profile]]["interaction.clicked"] == 1
        await waiting.run.handle.terminate("test over")
