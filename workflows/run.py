"""The run workflow: pages the audience and runs it as cohorts in a sliding window."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.cohort import CohortWorkflow
from workflows.inputs import CohortInput, CohortResult, JourneyRunInput, RunProgress, RunResult

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        FINISH_RUN,
        LIST_AUDIENCE,
        AudiencePage,
        AudiencePageRequest,
        FinishRun,
    )

STORE_ACTIVITY_TIMEOUT = timedelta(minutes=2)
STORE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))


@workflow.defn(name="JourneyRun")
class JourneyRunWorkflow:
    def __init__(self) -> None:
        self._progress = RunProgress()

    @workflow.query
    def progress(self) -> RunProgress:
        return self._progress

    @workflow.run
    async def run(self, run: JourneyRunInput) -> RunResult:
        self._progress = progress = run.progress or RunProgress()
        options = run.options
        totals: Counter[str] = Counter(progress.totals)
        running: set[asyncio.Task[CohortResult]] = set()
        stopped: str | None = None

        while True:
            wind_down = workflow.info().is_continue_as_new_suggested()
            while not wind_down and len(running) < options.cohort_window:
                cohort = await self._next_cohort(run)
                if not cohort:
                    break
                progress.cohorts_started += 1
                handle = await workflow.start_child_workflow(
                    CohortWorkflow.run,
                    CohortInput(run.run_id, run.journey, cohort, options),
                    id=f"{run.run_id}/cohort-{progress.cohorts_started:06d}",
                )
                running.add(handle)
            if not running:
                break
            done, _ = await workflow.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                running.discard(task)
                result = task.result()
                totals.update(result.counts)
                stopped = stopped or result.stopped
            progress.totals = dict(totals)
            if wind_down and not running:
                workflow.continue_as_new(dataclasses.replace(run, progress=progress))

        summary = dict(totals)
        await workflow.execute_activity(
            FINISH_RUN,
            FinishRun(run.run_id, "completed", summary, stopped),
            start_to_close_timeout=STORE_ACTIVITY_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
        return RunResult(
            run_id=run.run_id, counts=summary, cohorts=progress.cohorts_started, stopped=stopped
        )

    async def _next_cohort(self, run: JourneyRunInput) -> list[str]:
        """The next cohort's profile ids, paging the audience when the buffer runs low."""
        progress = self._progress
        size = run.options.cohort_size
        while len(progress.buffered) < size and not progress.exhausted:
            page = await workflow.execute_activity(
                LIST_AUDIENCE,
                AudiencePageRequest(
                    run.run_id,
                    run.audience,
                    progress.after,
                    max(run.options.audience_page_size, size),
                ),
                result_type=AudiencePage,
                start_to_close_timeout=STORE_ACTIVITY_TIMEOUT,
                retry_policy=STORE_RETRY,
            )
            progress.buffered.extend(page.profile_ids)
            progress.after = page.next_after
            progress.exhausted = page.next_after is None
        cohort, progress.buffered = progress.buffered[:size], progress.buffered[size:]
        return cohort
