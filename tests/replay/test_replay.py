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
from workflows.contracts import CohortInput, CohortResult, JourneyRunInput, RunResult
from workflows.run import PATCH_COHORTS_REPORT, JourneyRunWorkflow
from workflows.scheduled import ScheduledRunWorkflow

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
    assert "c-triggered-local-cohort" in names  # its send a local activity
    assert {"continue-as-new-cohort-1-1", "continue-as-new-cohort-1-2"} <= names
    assert any(n.startswith("foundation-") for n in names)
    # cohorts that report by signal, and a run that continues as new while they run
    for shape in ("b-broadcast", "b-run-continue-as-new", "b-cancel-continued"):
        assert any(n.startswith(f"{shape}-run") for n in names), shape
        assert any(n.startswith(f"{shape}-cohort-") for n in names), shape
    assert {"b-run-continue-as-new-run-1", "b-run-continue-as-new-run-2"} <= names
    # cohorts that report only when asked, by a run about to continue as new
    for shape in ("f-broadcast", "f-run-continue-as-new"):
        assert any(n.startswith(f"{shape}-run") for n in names), shape
        assert any(n.startswith(f"{shape}-cohort-") for n in names), shape
    assert {"f-run-continue-as-new-run-1", "f-run-continue-as-new-run-2"} <= names
    # a schedule's firing, and the run it started as its child
    assert {"d-scheduled-firing", "d-scheduled-run", "d-scheduled-cohort-1"} <= names
    # an experiment split judged by the run, promoted, and taken by later profiles
    assert {"e-experiment-run", "e-experiment-cohort-1"} <= names
    # a best_hour wait: the hours chosen by an activity, the timers set by the workflow
    assert {"e-best-hour-run", "e-best-hour-cohort-1"} <= names


async def test_the_workflows_replay_every_recorded_history() -> None:
    replayer = Replayer(
        workflows=[JourneyRunWorkflow, CohortWorkflow, ScheduledRunWorkflow],
        data_converter=pydantic_data_converter,
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


@workflow.defn(name="JourneyRun")
class RunWithoutReports(JourneyRunWorkflow):
    """The run as a careless change would make it: the patch marker kept, but the cohorts
    awaited as children (and the history full only once every running cohort has finished)."""

    @workflow.run
    async def run(self, run: JourneyRunInput) -> RunResult:
        return await super().run(run)

    @staticmethod
    def _cohorts_report() -> bool:
        workflow.patched(PATCH_COHORTS_REPORT)
        return False


@pytest.mark.parametrize("name", ["b-broadcast-run", "b-run-continue-as-new-run-2"])
async def test_the_run_without_its_patch_fails_the_replay_of_reporting_cohorts(name: str) -> None:
    replayer = Replayer(workflows=[RunWithoutReports], data_converter=pydantic_data_converter)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(
            history(Path(__file__).parent / "histories" / f"{name}.json")
        )


@pytest.mark.parametrize(
    "name",
    ["broadcast-cohort-1", "triggered-cohort", "every-node-cohort-1", "e-best-hour-cohort-1"],
)
async def test_a_non_deterministic_change_fails_the_replay(name: str) -> None:
    replayer = Replayer(workflows=[ReorderedCohort], data_converter=pydantic_data_converter)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(
            history(Path(__file__).parent / "histories" / f"{name}.json")
        )
