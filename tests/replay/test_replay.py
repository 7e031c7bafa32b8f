"""Workflow code must replay every recorded history (DESIGN.md decision 7).

histories/ holds one recorded run of each journey shape (``python -m tests.replay.record``),
and the foundation's histories from before the interpreter grew: a change to the workflows
that would make any of them take another path must go behind ``workflow.patched``. The last
test makes sure this test can fail: a deliberately non-deterministic variant of the cohort
workflow does not replay.

Every replay runs twice: as a worker with its default workflow cache replays a history (the
whole of it at once), and as a worker that caches no workflow (``max_cached_workflows=0``)
meets it: from the first event again on every workflow task, so once per task, each time up
to that task's start. The SDK's Replayer takes no cache size of its own, so the second is
the history cut at each task it holds.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from workflows.cohort import CohortWorkflow
from workflows.contracts import CohortInput, CohortResult, JourneyRunInput, RunResult
from workflows.run import PATCH_COHORTS_REPORT, JourneyRunWorkflow
from workflows.scheduled import ScheduledRunWorkflow

HISTORY_DIR = Path(__file__).parent / "histories"
HISTORIES = sorted(HISTORY_DIR.glob("*.json"))
SHAPES = {"broadcast", "delay-signals", "wait-for", "every-node", "quiet-hours", "goal-event"}


def history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


# how a worker meets a history: with its default workflow cache, or caching none
CACHES = ["default-cache", "no-cache"]


def as_each_task_meets_it(recorded: WorkflowHistory) -> Iterator[WorkflowHistory]:
    """The history as a worker that caches no workflow replays it: once per workflow task,
    from the first event up to that task's start (the task itself then runs as new code,
    not replaying), and at last whole, whose end checks the last task's commands too."""
    ends = [
        index + 1
        for index, event in enumerate(recorded.events)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    ]
    if not ends or ends[-1] < len(recorded.events):
        ends.append(len(recorded.events))
    for end in ends:
        yield WorkflowHistory(recorded.workflow_id, recorded.events[:end])


async def each(paths: list[Path], cache: str = "default-cache") -> AsyncIterator[WorkflowHistory]:
    for path in paths:
        recorded = history(path)
        if cache == "no-cache":
            for cut in as_each_task_meets_it(recorded):
                yield cut
        else:
            yield recorded


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
    # cohorts that park in a long wait, and a run that starts the next in their place
    assert {"g-parked-cohorts-run-1", "g-parked-cohorts-run-2", "g-parked-cohorts-cohort-3"} <= (
        names
    )
    # a schedule's firing, and the run it started as its child
    assert {"d-scheduled-firing", "d-scheduled-run", "d-scheduled-cohort-1"} <= names
    # an experiment split judged by the run, promoted, and taken by later profiles
    assert {"e-experiment-run", "e-experiment-cohort-1"} <= names
    # a best_hour wait: the hours chosen by an activity, the timers set by the workflow
    assert {"e-best-hour-run", "e-best-hour-cohort-1"} <= names


def test_without_a_cache_each_history_replays_once_per_workflow_task() -> None:
    recorded = history(HISTORIES[0])
    cuts = list(as_each_task_meets_it(recorded))
    tasks = [
        e for e in recorded.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    ]
    assert len(tasks) >= 2
    assert [cut.events[-1] for cut in cuts[: len(tasks)]] == tasks
    assert cuts[-1].events == recorded.events
    assert all(len(a.events) < len(b.events) for a, b in itertools.pairwise(cuts))


@pytest.mark.parametrize("cache", CACHES)
async def test_the_workflows_replay_every_recorded_history(cache: str) -> None:
    replayer = Replayer(
        workflows=[JourneyRunWorkflow, CohortWorkflow, ScheduledRunWorkflow],
        data_converter=pydantic_data_converter,
    )
    results = await replayer.replay_workflows(each(HISTORIES, cache), raise_on_replay_failure=False)
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


@workflow.defn(name="JourneyRun")
class RunHoldingParkedCohorts(JourneyRunWorkflow):
    """The run as a careless change would make it: the patch marker kept, but a parked
    cohort keeping its place in the window until it ends."""

    @workflow.run
    async def run(self, run: JourneyRunInput) -> RunResult:
        return await super().run(run)

    def _take_parked_words(self) -> None:
        self._parked_words = []


async def fails_to_replay(careless: type, name: str, cache: str) -> None:
    replayer = Replayer(workflows=[careless], data_converter=pydantic_data_converter)
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflows(each([HISTORY_DIR / f"{name}.json"], cache))


@pytest.mark.parametrize("cache", CACHES)
async def test_a_run_that_holds_parked_cohorts_fails_the_replay_of_parking(cache: str) -> None:
    await fails_to_replay(RunHoldingParkedCohorts, "g-parked-cohorts-run-2", cache)


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("name", ["b-broadcast-run", "b-run-continue-as-new-run-2"])
async def test_the_run_without_its_patch_fails_the_replay_of_reporting_cohorts(
    name: str, cache: str
) -> None:
    await fails_to_replay(RunWithoutReports, name, cache)


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize(
    "name",
    ["broadcast-cohort-1", "triggered-cohort", "every-node-cohort-1", "e-best-hour-cohort-1"],
)
async def test_a_non_deterministic_change_fails_the_replay(name: str, cache: str) -> None:
    await fails_to_replay(ReorderedCohort, name, cache)
