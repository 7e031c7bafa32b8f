"""A journey that waits: profiles sleep on a delay node, and interaction signals reach the
cohort that sent the push, applied once however often they arrive."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import select
from temporalio.client import Client

from tests.harness import app_credentials, make_settings, real_stack, unique_ids
from tidings.journeys import parse_definition
from tidings.runs.start import start_run
from tidings.sim import Simulators
from tidings.store.models import Delivery
from workflows.cohort import CohortWorkflow
from workflows.contracts import INTERACTIONS_SIGNAL, InteractionBatch, InteractionEvent


async def test_delay_holds_profiles_and_signals_are_deduplicated(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> None:
    settings = make_settings(tmp_path, database_url, sims)
    team, key, project = unique_ids()
    async with real_stack(settings, temporal_client) as stack:
        body = {"id": "waits", "name": "Waits"} | app_credentials(
            sims, team_id=team, key_id=key, project_id=project
        )
        assert (await stack.http.post("/v1/apps", json=body)).status_code == 201
        device = {
            "profile_id": "ann",
            "create_profile": True,
            "provider": "apns",
            "token": "cd" * 32,
        }
        assert (await stack.http.post("/v1/apps/waits/devices", json=device)).status_code == 200
        journey = parse_definition(
            {
                "id": "wait-then-exit",
                "name": "Wait",
                "app": "waits",
                "nodes": [
                    {"id": "hello", "type": "push", "content": {"body": "hi"}, "next": "pause"},
                    {"id": "pause", "type": "delay", "duration": "4s", "next": "done"},
                    {"id": "done", "type": "exit"},
                ],
            }
        )
        started = await start_run(temporal_client, stack.db, settings, journey, profile_ids=["ann"])
        cohort_id = f"{started.run_id}/cohort-000001"
        # wait until the push is in the ledger, so the cohort stands on the delay node
        for _ in range(100):
            async with stack.db.read() as session:
                row = (await session.exec(select(Delivery))).first()
            if row is not None and row.status == "delivered":
                break
            await asyncio.sleep(0.1)
        assert row is not None
        event = InteractionEvent(
            event_id="e-1",
            profile_id="ann",
            kind="opened",
            occurred_at=datetime.now(UTC),
            node_id="hello",
            tracking_id=row.tracking_id,
        )
        cohort = temporal_client.get_workflow_handle_for(CohortWorkflow.run, cohort_id)
        for _ in range(3):  # the forwarder may deliver an event more than once
            await cohort.signal(INTERACTIONS_SIGNAL, InteractionBatch([event]))
        result = await started.handle.result()
        assert result.counts["interaction.opened"] == 1
        assert result.counts["exited"] == 1
        description = await started.handle.describe()
        assert description.close_time is not None
        assert (description.close_time - description.start_time).total_seconds() >= 4
