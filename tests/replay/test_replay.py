"""Workflow code must replay every recorded history (DESIGN.md decision 7).

histories/ holds one recorded run of each journey shape (``python -m tests.replay.record``),
and the foundation's histories from before the interpreter grew: a change to the workflows
that would make any of them take another path must go behind ``workflow.patched``. The last
test makes sure this test can fail: a deliberately non-deterministic variant of the cohort
workflow does not replay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from workflows.cohort import CohortWorkflow
from workflows.inputs import CohortInput, CohortResult
from workflows.run import JourneyRunWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
SHAPES = {"broadcast", "delay-signals", "wait-for", "every-node", "quiet-hours", "goal-event"}


def history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


async def each(paths: list[Path]) -> AsyncIterator[WorkflowHistory]:
    for path in paths:
        yield history(path)


def test_every_journey_shape_has_recorded_histories() -> None:
    names = {path.stem for path in HISTORIES}
    for shape in SHAPES | {"cancel", "continue-as-new"}:
        assert f"{shape}-run" in names, shape
        assert any(n.startswith(f"{shape}-cohort-") for n in names), shape
    assert "triggered-cohort" in names
    assert {"continue-as-new-cohort-1-1", "continue-as-new-cohort-1-2"} <= names
    assert any(n.startswith("foundation-") for n in names)


async def test_the_workflows_replay_every_recorded_history() -> None:
    replayer = Replayer(
        workflows=[JourneyRunWorkflow, CohortWorkflow], data_converter=pydantic_data_converter
    )
    results = await replayer.replay_workflows(each(HISTORIES), raise_on_replay_failure=False)
    assert results.replay_failures == {}


@workflow.defn(name="JourneyCohort")
class ReorderedCohort(CohortWorkflow):
    """The cohort as a careless change would make it: a timer before anything else."""

    @workflow.run
    async def run(self, cohort: CohortInput) -> CohortResult:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(cohort)


@pytest.mark.parametrize("name", ["broadcast-cohort-1", "triggered-cohort", "every-node-cohort-1"])
async def test_a_non_deterministic_change_fails_the_replay(name: str) -> None:
    replayer = Replayer(workflows=[ReorderedCohort], data_converter=pydantic_data_converter)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(
            history(Path(__file__).parent / "histories" / f"{name}.json")
        )
