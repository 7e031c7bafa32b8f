"""Journeys run by a worker that caches no workflow: every workflow task replays the whole
history, so a live run proves the interpreter takes no step that depends on the worker's
memory. (Its own module: the sandbox re-imports the modules that define workflow classes,
and this one imports the recorder's stack.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.replay import record
from tests.replay.test_replay import each
from tests.scene import Scene
from workflows.cohort import CohortWorkflow
from workflows.run import JourneyRunWorkflow


async def test_journeys_run_with_no_workflow_cache_and_their_histories_replay(
    tmp_path: Path, temporal_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that caches no workflow replays each workflow's whole history on every task:
    a journey that completes that way takes no step that depends on the worker's memory, and
    the histories it leaves replay too."""
    # every process of the stack (the API's too) on the test's Temporal server
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_client.service_client.config.target_host)
    recorded = tmp_path / "histories"
    recorded.mkdir()
    shapes: list[Callable[[Scene], Awaitable[None]]] = [
        record.broadcast,
        record.delay_and_signals,
        record.wait_for_interaction,
        record.every_node,
        record.goal_and_event,
        record.continue_as_new,
        record.b_run_continue_as_new,
        record.c_triggered_local,
    ]
    await record.record(shapes, recorded, temporal_client, tmp_path, workflow_cache_size=0)
    paths = sorted(recorded.glob("*.json"))
    assert len(paths) >= 2 * len(shapes) - 1  # a run and its cohorts (a trigger: a cohort)
    replayer = Replayer(
        workflows=[JourneyRunWorkflow, CohortWorkflow], data_converter=pydantic_data_converter
    )
    results = await replayer.replay_workflows(each(paths), raise_on_replay_failure=False)
    assert results.replay_failures == {}
