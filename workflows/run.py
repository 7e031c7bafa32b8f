"""The run workflow: pages the audience and runs it as cohorts in a sliding window.

The audience is read one page at a time (never whole), with what the interpreter needs to
know of each profile (time zone, the attributes conditions read); at most ``cohort_window``
cohorts take steps at once. A cohort whose profiles all wait ``cohort_parks_after`` or longer
says so once, and the run starts the next cohort in its place: a journey that pushes, waits a
day and reminds reaches its whole audience on the first day, not a window's worth a day. A
cancel stops new cohorts, asks the running ones to stop taking steps,
and waits for their sends in flight to settle before the run records itself as cancelled.

Cohorts outlive the run's continue-as-new: they are started with ``ParentClosePolicy.ABANDON``,
and the run carries the ids of the cohorts still running in its progress and counts each end
once by cohort id, so a run whose history is full continues as new at once, and a journey
with a day-long delay never holds its audience back a day. A cohort's end reaches the run
that started it as its child's completion; before continuing as new, the run asks its
running cohorts to report their end instead, by signalling its workflow id, which stays the
same across continue-as-new (a failed cohort always reports). Runs recorded before that
patch had every cohort report; runs started before cohorts reported at all (no patch
marker) wait for every running cohort before they continue as new.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy, TypedSearchAttributes
from temporalio.exceptions import ChildWorkflowError, FailureError
from temporalio.workflow import ParentClosePolicy

from workflows.cohort import CohortWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        AudiencePageRequest,
        FinishRun,
        JudgeExperiment,
        ProfileFacts,
    )
    from activities.declarations import AudienceActivity, ExperimentsActivity, RecordsActivity
    from tidings.journeys.model import RandomSplitNode
    from workflows.contracts import (
        CANCEL_SIGNAL,
        COHORT_PARKED_SIGNAL,
        COHORT_REPORT_SIGNAL,
        PROMOTE_SIGNAL,
        REPORT_REQUEST_SIGNAL,
        BranchPromotion,
        CohortInput,
        CohortReport,
        CohortResult,
        EngineOptions,
        JourneyRunInput,
        RunProgress,
        RunResult,
        RunStatusView,
    )
    from workflows.counts import Counts
    from workflows.history import history_full

# Store-only activities take milliseconds; a worker killed while running one must delay the
# run by seconds, not by a long start-to-close timeout (retried at once, then backing off).
STORE_ACTIVITY_TIMEOUT = timedelta(seconds=10)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)
)
# Cohorts report their end by signal and outlive the run's continue-as-new (DESIGN.md
# decision 7: runs recorded before this replay on the old path).
PATCH_COHORTS_REPORT = "run-cohorts-report"
# Cohorts report a successful end only when asked, before the run continues as new (a
# failure always): the run counts the others' completions as its children's, a signal, its
# acknowledgement and a workflow task fewer a cohort. Runs recorded before this ask every
# cohort for a report.
PATCH_REPORTS_ON_REQUEST = "run-cohorts-report-on-request"
# Experiment splits with ``promote: auto``: the run looks for a winner on a timer. Asked only
# by runs of journeys that have one, so no other history carries the marker.
PATCH_AUTO_PROMOTE = "run-auto-promote"
# The cohorts a run starts say when they park in a long wait, and the window counts only the
# others. Runs recorded before this kept a parked cohort's place until it ended.
PATCH_COHORTS_PARK = "run-cohorts-park"
# An experiment's verdict reads every branch membership of the run (about 1.5 s per 100,000
# profiles on either store): a run of millions must not time it out.
JUDGE_TIMEOUT = timedelta(minutes=5)
# Failures a run keeps word for word (in its progress and its record); the rest are counted.
FAILURES_KEPT = 5

Cohort = workflow.ChildWorkflowHandle[Any, CohortResult]


@workflow.defn(name="JourneyRun")
class JourneyRunWorkflow:
    def __init__(self) -> None:
        self._progress = RunProgress()
        # by cohort id, in start order (a set's order would differ between workers): the
        # child handle, or None for a cohort a previous run of this workflow started
        self._running: dict[str, Cohort | None] = {}
        self._reports: list[CohortReport] = []
        # cohorts a cancel could not reach: they have ended
        self._unreachable: list[str] = []
        self._cancel_sent = False
        # this run of the workflow has started or counted a cohort: only then may it continue
        # as new, so a tiny history limit cannot make it continue as new for ever
        self._worked = False
        # promotions not yet passed on to the running cohorts
        self._unsent_promotions: list[BranchPromotion] = []
        # the cohorts this run starts report a successful end only when asked
        self._reports_on_request = False
        # the cohorts this run starts say when they park in a long wait
        self._parking = False
        # running cohorts parked in a long wait, in the order they said so (a subset of
        # ``_running``: they hold no place in the window); and parked words not yet taken in
        self._parked: dict[str, None] = {}
        self._parked_words: list[str] = []

    @workflow.query
    def progress(self) -> RunProgress:
        return self._progress

    @workflow.query
    def status(self) -> RunStatusView:
        progress = self._progress
        return RunStatusView(
            totals=dict(progress.totals),
            running_cohorts=list(self._running),
            cohorts_started=progress.cohorts_started,
            parked_cohorts=list(self._parked),
            cohorts_finished=progress.cohorts_finished,
            audience_exhausted=self._audience_done(),
            cancelled=progress.cancelled,
        )

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self) -> None:
        """Start no more cohorts; the running ones stop taking steps and settle."""
        self._progress.cancelled = True

    @workflow.signal(name=PROMOTE_SIGNAL)
    def promote(self, promotion: BranchPromotion) -> None:
        """An experiment split has a winner: the cohorts running take it from now on, the
        ones started later from their start. The first promotion of a split stands."""
        self._promote(promotion)

    def _promote(self, promotion: BranchPromotion) -> None:
        if promotion.node_id in self._progress.promotions:
            return
        self._progress.promotions[promotion.node_id] = promotion.branch
        self._unsent_promotions.append(promotion)

    @workflow.signal(name=COHORT_REPORT_SIGNAL)
    def cohort_report(self, report: CohortReport) -> None:
        """A cohort has ended; the run loop counts it (once, by its id)."""
        self._reports.append(report)

    @workflow.signal(name=COHORT_PARKED_SIGNAL)
    def cohort_parked(self, cohort_id: str) -> None:
        """A cohort has every profile in a long wait: the run loop gives its place in the
        window to the next cohort."""
        self._parked_words.append(cohort_id)

    @workflow.run
    async def run(self, run: JourneyRunInput) -> RunResult:
        # a cancel may come in the first activation, before this: with the placeholder
        cancelled_early = self._progress.cancelled
        self._progress = progress = run.progress or RunProgress()
        if self._cohorts_report():
            # (runs from before this lost such a cancel, and replay as they ran)
            progress.cancelled = progress.cancelled or cancelled_early
            self._reports_on_request = self._cohorts_report_on_request()
            self._parking = workflow.patched(PATCH_COHORTS_PARK)
            await self._run_cohorts(run)
        else:
            await self._run_cohorts_awaiting_each(run)

        summary = progress.totals | {Counts.COHORTS: progress.cohorts_started}
        status: Literal["completed", "cancelled", "failed"] = (
            "cancelled"
            if progress.cancelled
            else "failed"
            if progress.cohorts_failed
            else "completed"
        )
        await workflow.execute_activity_method(
            RecordsActivity.finish_run,
            FinishRun(run.run_id, status, summary, self._failure_summary() or progress.stopped),
            start_to_close_timeout=STORE_ACTIVITY_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
        return RunResult(
            run_id=run.run_id,
            counts=summary,
            cohorts=progress.cohorts_started,
            stopped=progress.stopped,
            status=status,
        )

    async def _run_cohorts(self, run: JourneyRunInput) -> None:
        """Keep the window full until the audience is exhausted (or the run is cancelled)
        and every cohort has reported; continue as new whenever the history is full, with
        the cohorts still running."""
        self._running.update(dict.fromkeys(self._progress.running_cohorts))
        self._parked.update(
            dict.fromkeys(c for c in self._progress.parked_cohorts if c in self._running)
        )
        judging = self._judge_experiments(run)
        try:
            await self._run_cohorts_loop(run)
        finally:
            if judging is not None:
                judging.cancel()

    async def _run_cohorts_loop(self, run: JourneyRunInput) -> None:
        progress = self._progress
        options = run.options
        running = self._running
        while True:
            self._worked = self._take_word_of_cohorts() or self._worked
            if self._unsent_promotions:
                await self._pass_on_promotions()
            if not running and (progress.cancelled or self._audience_done()):
                return
            if self._worked and self._history_full(options):
                if self._reports_on_request:
                    await self._ask_for_reports()
                    self._take_word_of_cohorts()
                workflow.continue_as_new(dataclasses.replace(run, progress=progress))
            if not progress.cancelled:
                self._worked = await self._start_cohorts(run) or self._worked
            if progress.cancelled and not self._cancel_sent:
                self._cancel_sent = True
                await self._cancel_running()
                continue
            if not running:
                continue
            await workflow.wait_condition(
                lambda: (
                    bool(self._reports)
                    or bool(self._parked_words)
                    or bool(self._unsent_promotions)
                    or any(h is not None and h.done() for h in running.values())
                    or (progress.cancelled and not self._cancel_sent)
                    or (self._worked and self._history_full(options))
                )
            )

    async def _start_cohorts(self, run: JourneyRunInput) -> bool:
        """Fill the window: page the audience as needed, then start the new cohorts together
        (one workflow task for all their starts)."""
        progress = self._progress
        starting: list[tuple[str, CohortInput]] = []
        while len(self._running) - len(self._parked) < run.options.cohort_window:
            cohort, facts = await self._next_cohort(run)
            if not cohort:
                break
            progress.cohorts_started += 1
            cohort_id = f"{run.run_id}/cohort-{progress.cohorts_started:06d}"
            # running before its start resolves: its report may come that early
            self._running[cohort_id] = None
            starting.append(
                (
                    cohort_id,
                    CohortInput(
                        run.run_id,
                        run.journey,
                        cohort,
                        run.options,
                        facts,
                        report_to=workflow.info().workflow_id,
                        promotions=dict(progress.promotions),
                        report_only_when_asked=self._reports_on_request,
                        report_parking=self._parking,
                    ),
                )
            )
        handles = await asyncio.gather(
            *(
                workflow.start_child_workflow(
                    CohortWorkflow.run,
                    cohort_input,
                    id=cohort_id,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    search_attributes=self._cohort_attributes(),
                )
                for cohort_id, cohort_input in starting
            )
        )
        for (cohort_id, _), handle in zip(starting, handles, strict=True):
            if cohort_id in self._running:
                self._running[cohort_id] = handle
        self._progress.running_cohorts = list(self._running)
        return bool(starting)

    @staticmethod
    def _cohort_attributes() -> TypedSearchAttributes | None:
        """A cohort is found by its run's search attributes (journey, version, app, run
        kind): copied from the run, which has them only where they are registered. They
        are no part of what a replay checks of a child's start."""
        own = [
            pair
            for pair in workflow.info().typed_search_attributes
            if pair.key.name.startswith("Tidings")
        ]
        return TypedSearchAttributes(own) if own else None

    async def _pass_on_promotions(self) -> None:
        """Tell every running cohort of the new promotions, by workflow id (a cohort that
        has closed needs no word)."""
        promotions, self._unsent_promotions = self._unsent_promotions, []
        for promotion in promotions:
            await asyncio.gather(
                *(self._signal_cohort(c, PROMOTE_SIGNAL, promotion) for c in self._running)
            )

    @staticmethod
    async def _signal_cohort(
        cohort_id: str, signal: str, argument: BranchPromotion | None = None
    ) -> bool:
        handle = workflow.get_external_workflow_handle(cohort_id)
        try:
            if argument is None:
                await handle.signal(signal)
            else:
                await handle.signal(signal, argument)
        except FailureError:
            return False  # it has closed
        return True

    async def _ask_for_reports(self) -> None:
        """Before continuing as new: the cohorts this run started would end as its
        children, unseen by the next run, so ask each to report by signal. One that has
        closed already cannot be asked: its end reaches this run as its child's, awaited
        here. (Cohorts a previous run started were asked by it.)"""
        asked = [
            (cohort_id, handle)
            for cohort_id, handle in self._running.items()
            if handle is not None and not handle.done()
        ]
        reached = await asyncio.gather(
            *(self._signal_cohort(cohort_id, REPORT_REQUEST_SIGNAL) for cohort_id, _ in asked)
        )
        closed = [handle for (_, handle), ok in zip(asked, reached, strict=True) if not ok]
        if closed:
            await workflow.wait_condition(lambda: all(h.done() for h in closed))

    def _judge_experiments(self, run: JourneyRunInput) -> asyncio.Task[None] | None:
        """With experiment splits to promote automatically, a task that asks an activity for
        their verdicts every ``check_every`` until each has a winner (the verdict reaches the
        run as the activity's result, so a replay takes the same course)."""
        auto = [
            node
            for node in run.journey.nodes
            if isinstance(node, RandomSplitNode)
            and node.experiment is not None
            and node.experiment.promote == "auto"
        ]
        if not auto or not workflow.patched(PATCH_AUTO_PROMOTE):
            return None
        return asyncio.ensure_future(self._judge_until_promoted(run, auto))

    async def _judge_until_promoted(
        self, run: JourneyRunInput, splits: list[RandomSplitNode]
    ) -> None:
        promotions = self._progress.promotions
        while True:
            pending = [node for node in splits if node.id not in promotions]
            if not pending:
                return
            every = min(node.experiment.check_every for node in pending if node.experiment)
            await workflow.sleep(every)
            for node in pending:
                decision = await workflow.execute_activity_method(
                    ExperimentsActivity.judge,
                    JudgeExperiment(run.run_id, node.id),
                    start_to_close_timeout=JUDGE_TIMEOUT,
                    retry_policy=STORE_RETRY,
                )
                if decision.branch is not None:
                    self._promote(BranchPromotion(node.id, decision.branch))

    async def _cancel_running(self) -> None:
        """Pass the cancel on to every running cohort, by workflow id: the ones a previous
        run of this workflow started have no child handle here."""
        cohort_ids = list(self._running)
        reached = await asyncio.gather(*(self._cancel_cohort(c) for c in cohort_ids))
        self._unreachable.extend(c for c, ok in zip(cohort_ids, reached, strict=True) if not ok)

    @staticmethod
    async def _cancel_cohort(cohort_id: str) -> bool:
        try:
            await workflow.get_external_workflow_handle(cohort_id).signal(CANCEL_SIGNAL)
        except FailureError:
            return False  # it has closed
        return True

    def _count_ended(self) -> bool:
        """Count the cohorts that have ended, each once: by its report, else (it ended
        without one: terminated, timed out) by its child handle or a cancel that could not
        reach it. Whether any was counted."""
        running = self._running
        counted = False
        reports, self._reports = self._reports, []
        for report in reports:
            if report.cohort_id not in running:
                workflow.logger.warning(
                    "ignoring a report from cohort %s, which is not running", report.cohort_id
                )
                continue
            del running[report.cohort_id]
            self._count(report.cohort_id, report.result, report.error)
            counted = True
        counted = self._count_closed_children("ended without a report: ") or counted
        unreachable, self._unreachable = self._unreachable, []
        for cohort_id in unreachable:
            # a report is signalled before its cohort closes, so one would be counted by now
            if cohort_id in running and running[cohort_id] is None:
                del running[cohort_id]
                self._count(cohort_id, CohortResult(), "ended without a report")
                counted = True
        return counted

    def _count_closed_children(self, failure_prefix: str) -> bool:
        """Count the cohorts whose child handle says they closed, each once (its result, or
        its failure after ``failure_prefix``). Whether any was counted."""
        counted = False
        for cohort_id, handle in list(self._running.items()):
            if handle is None or not handle.done():
                continue
            del self._running[cohort_id]
            try:
                result = handle.result()
            except ChildWorkflowError as error:
                self._count(cohort_id, CohortResult(), f"{failure_prefix}{error.cause or error}")
            else:
                self._count(cohort_id, result, None)
            counted = True
        return counted

    def _take_word_of_cohorts(self) -> bool:
        """Count the cohorts that ended and take the parked out of the window, and keep the
        progress a continue-as-new carries in step. Whether any cohort was counted."""
        counted = self._count_ended()
        self._take_parked_words()
        self._progress.running_cohorts = list(self._running)
        self._progress.parked_cohorts = list(self._parked)
        return counted

    def _take_parked_words(self) -> None:
        """Take the running cohorts that said they parked out of the window (a word from a
        cohort that has ended, or came twice, changes nothing)."""
        words, self._parked_words = self._parked_words, []
        for cohort_id in words:
            if cohort_id in self._running:
                self._parked[cohort_id] = None

    def _count(self, cohort_id: str, result: CohortResult, error: str | None) -> None:
        self._parked.pop(cohort_id, None)
        progress = self._progress
        progress.cohorts_finished += 1
        totals = Counter(progress.totals)
        totals.update(result.counts)
        progress.totals = dict(totals)
        progress.stopped = progress.stopped or result.stopped
        if error is not None:
            progress.cohorts_failed += 1
            if len(progress.failures) < FAILURES_KEPT:
                progress.failures.append(f"{cohort_id}: {error}")

    async def _run_cohorts_awaiting_each(self, run: JourneyRunInput) -> None:
        """The path of runs from before cohorts reported: cohorts are children ended with
        the run, their results awaited through their handles, and a full history stops new
        cohorts until the running ones have finished."""
        progress = self._progress
        options = run.options
        running = self._running
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
                    search_attributes=self._cohort_attributes(),
                )
                running[handle.id] = handle
            if progress.cancelled and not self._cancel_sent:
                self._cancel_sent = True
                for cohort_id in sorted(running):
                    child = running[cohort_id]
                    assert child is not None  # this path starts every cohort it awaits
                    await child.signal(CANCEL_SIGNAL)
            if not running:
                break
            await workflow.wait_condition(
                lambda: (
                    any(h is not None and h.done() for h in running.values())
                    or (progress.cancelled and not self._cancel_sent)
                )
            )
            self._count_closed_children("")
            if wind_down and not running:
                workflow.continue_as_new(dataclasses.replace(run, progress=progress))

    @staticmethod
    def _cohorts_report() -> bool:
        """Whether this run's cohorts report by signal and may outlive it (else: the path of
        runs recorded before)."""
        return workflow.patched(PATCH_COHORTS_REPORT)

    @staticmethod
    def _cohorts_report_on_request() -> bool:
        """Whether the cohorts this run starts report a successful end only when asked
        (else: every cohort reports, the path of runs recorded before)."""
        return workflow.patched(PATCH_REPORTS_ON_REQUEST)

    def _audience_done(self) -> bool:
        return self._progress.exhausted and not self._progress.buffered

    @staticmethod
    def _history_full(options: EngineOptions) -> bool:
        return history_full(options.run_history_limit)

    def _failure_summary(self) -> str | None:
        progress = self._progress
        if not progress.cohorts_failed:
            return None
        more = progress.cohorts_failed - len(progress.failures)
        return "; ".join(progress.failures) + (f"; and {more} more cohorts failed" if more else "")

    async def _next_cohort(self, run: JourneyRunInput) -> tuple[list[str], dict[str, ProfileFacts]]:
        """The next cohort's profile ids and facts, paging the audience when the buffer runs
        low."""
        progress = self._progress
        size = run.options.cohort_size
        while len(progress.buffered) < size and not progress.exhausted:
            page = await workflow.execute_activity_method(
                AudienceActivity.page,
                AudiencePageRequest(
                    run.run_id,
                    run.audience,
                    progress.after,
                    max(run.options.audience_page_size, size),
                    attributes=run.journey.condition_attributes(),
                ),
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
