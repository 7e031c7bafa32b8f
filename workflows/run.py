"""The run workflow: pages the audience and runs it as cohorts in a sliding window.

The audience is read one page at a time (never whole), with what the interpreter needs to
know of each profile (time zone, the attributes conditions read); at most ``cohort_window``
cohorts run at once. A cancel stops new cohorts, asks the running ones to stop taking steps,
and waits for their sends in flight to settle before the run records itself as cancelled.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ChildWorkflowError

from workflows.cohort import CohortWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        CANCEL_SIGNAL,
        FINISH_RUN,
        LIST_AUDIENCE,
        AudiencePage,
        AudiencePageRequest,
        FinishRun,
        ProfileFacts,
    )
    from workflows.inputs import (
        CohortInput,
        CohortResult,
        JourneyRunInput,
        RunProgress,
        RunResult,
        RunStatusView,
    )

STORE_ACTIVITY_TIMEOUT = timedelta(minutes=2)
STORE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30))

Cohort = workflow.ChildWorkflowHandle[Any, CohortResult]


@workflow.defn(name="JourneyRun")
class JourneyRunWorkflow:
    def __init__(self) -> None:
        self._progress = RunProgress()
        self._running: set[Cohort] = set()
        self._cancel_sent = False

    @workflow.query
    def progress(self) -> RunProgress:
        return self._progress

    @workflow.query
    def status(self) -> RunStatusView:
        progress = self._progress
        return RunStatusView(
            totals=dict(progress.totals),
            running_cohorts=sorted(handle.id for handle in self._running),
            cohorts_started=progress.cohorts_started,
            cohorts_finished=progress.cohorts_finished,
            audience_exhausted=progress.exhausted and not progress.buffered,
            cancelled=progress.cancelled,
        )

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self) -> None:
        """Start no more cohorts; the running ones stop taking steps and settle."""
        self._progress.cancelled = True

    @workflow.run
    async def run(self, run: JourneyRunInput) -> RunResult:
        self._progress = progress = run.progress or RunProgress()
        options = run.options
        totals: Counter[str] = Counter(progress.totals)
        running = self._running
        stopped: str | None = None
        failures: list[str] = []

        while True:
            wind_down = workflow.info().is_continue_as_new_suggested()
            while not wind_down and not progress.cancelled and len(running) < options.cohort_window:
                cohort, facts = await self._next_cohort(run)
                if not cohort:
                    break
                progress.cohorts_started += 1
                handle = await workflow.start_child_workflow(
                    CohortWorkflow.run,
                    CohortInput(run.run_id, run.journey, cohort, options, facts),
                    id=f"{run.run_id}/cohort-{progress.cohorts_started:06d}",
                )
                running.add(handle)
            if progress.cancelled and not self._cancel_sent:
                self._cancel_sent = True
                for handle in sorted(running, key=lambda h: h.id):
                    await handle.signal(CANCEL_SIGNAL)
            if not running:
                break
            await workflow.wait_condition(
                lambda: (
                    any(h.done() for h in running) or (progress.cancelled and not self._cancel_sent)
                )
            )
            for handle in [h for h in running if h.done()]:
                running.discard(handle)
                progress.cohorts_finished += 1
                try:
                    result = handle.result()
                except ChildWorkflowError as error:
                    failures.append(f"{handle.id}: {error.cause or error}")
                    continue
                totals.update(result.counts)
                stopped = stopped or result.stopped
            progress.totals = dict(totals)
            if wind_down and not running:
                workflow.continue_as_new(dataclasses.replace(run, progress=progress))

        summary = dict(totals) | {"cohorts": progress.cohorts_started}
        status: Literal["completed", "cancelled", "failed"] = (
            "cancelled" if progress.cancelled else "failed" if failures else "completed"
        )
        await workflow.execute_activity(
            FINISH_RUN,
            FinishRun(run.run_id, status, summary, "; ".join(failures[:5]) or stopped),
            start_to_close_timeout=STORE_ACTIVITY_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
        return RunResult(
            run_id=run.run_id,
            counts=summary,
            cohorts=progress.cohorts_started,
            stopped=stopped,
            status=status,
        )

    async def _next_cohort(self, run: JourneyRunInput) -> tuple[list[str], dict[str, ProfileFacts]]:
        """The next cohort's profile ids and facts, paging the audience when the buffer runs
        low."""
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
                    attributes=run.journey.condition_attributes(),
                ),
                result_type=AudiencePage,
                start_to_close_timeout=STORE_ACTIVITY_TIMEOUT,
                retry_policy=STORE_RETRY,
            )
            progress.buffered.extend(page.profile_ids)
            progress.buffered_facts.update(page.facts)
            progress.after = page.next_after
            progress.exhausted = page.next_after is None
        cohort, progress.buffered = progress.buffered[:size], progress.buffered[size:]
        facts = {
            pid: progress.buffered_facts.pop(pid)
            for pid in cohort
            if pid in progress.buffered_facts
        }
        return cohort, facts
