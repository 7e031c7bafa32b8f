"""The cohort workflow: the journey interpreter over a few hundred profiles at once.

Profiles standing on the same node advance together through one handler call (for a push
node: one batch activity), so a push costs a small fraction of a Temporal action. A cohort
of one profile is the per-profile case used by triggered journeys. Each profile keeps its own
position and timers; the workflow sleeps until the earliest timer, a finished step or the
next signal.

Steps that wait on an activity (a push) run as tasks and their profiles are *busy* until the
step ends; meanwhile the rest of the cohort moves on. A goal event or a cancel never cuts a
step short: a busy profile leaves once its step has settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError, FailureError

# The interpreter's modules are deterministic and hold no global state: passed through, they
# load once per worker instead of once per workflow run (which would also rebuild the data
# converter's validators for every new input class).
with workflow.unsafe.imports_passed_through():
    from activities.contracts import JourneyEventRecord
    from workflows.contracts import (
        CANCEL_SIGNAL,
        COHORT_PARKED_SIGNAL,
        COHORT_REPORT_SIGNAL,
        INTERACTIONS_SIGNAL,
        PROMOTE_SIGNAL,
        REPORT_REQUEST_SIGNAL,
        BranchPromotion,
        CohortInput,
        CohortProgress,
        CohortReport,
        CohortResult,
        InteractionBatch,
        InteractionEvent,
    )
    from workflows.counts import Counts, Left
    from workflows.history import history_full
    from workflows.nodes import advance, blocks, event_driven
    from workflows.nodes.context import CohortContext
    from workflows.state import CohortState, ProfileState

# Workflow code changes go behind patches (DESIGN.md decision 7): histories recorded before
# a change replay on the old path.
PATCH_CONCURRENT_STEPS = "cohort-concurrent-steps"
PATCH_CONTINUE_AS_NEW = "cohort-continue-as-new"
PATCH_INTERACTION_VISITS = "cohort-interaction-visits"
# Steps taken without time passing before the interpreter calls it a spin (a journey whose
# loop waits on something that is already true).
MAX_STEPS_PER_INSTANT = 10_000


@workflow.defn(name="JourneyCohort")
class CohortWorkflow:
    @workflow.init
    def __init__(self, cohort: CohortInput) -> None:
        journey = cohort.journey
        if cohort.snapshot is not None:
            self._state = CohortState.restore(cohort.snapshot)
        else:
            self._state = CohortState(
                profiles={
                    pid: ProfileState(node=journey.start_node, visits=dict(cohort.prior_visits))
                    for pid in cohort.profile_ids
                }
            )
            self._state.counts[Counts.PROFILES] = len(cohort.profile_ids)
            self._state.promotions = dict(cohort.promotions)
        self._goal = journey.goal.event if journey.goal is not None else None
        self._event_nodes = {n.id for n in journey.nodes if event_driven(n)}
        self._woken = False
        self._busy: set[str] = set()
        self._tasks: dict[asyncio.Task[None], list[str]] = {}
        # whether a successful end is reported to the run by signal (else the run counts
        # this cohort's completion as its child's)
        self._report_success = not cohort.report_only_when_asked
        # whether the run still waits to hear that this cohort parked in a long wait
        self._report_parking = cohort.report_parking and cohort.report_to is not None

    @workflow.signal(name=INTERACTIONS_SIGNAL)
    def interactions(self, batch: InteractionBatch) -> None:
        """Apply each event once, whatever the forwarder's retries."""
        state = self._state
        for event in batch.events:
            if event.event_id in state.seen_events:
                continue
            state.seen_events.add(event.event_id)
            profile = state.profiles.get(event.profile_id)
            if profile is None:
                continue
            if event.kind == "custom":
                state.event_seq += 1
                if event.name:
                    profile.events[event.name] = state.event_seq
                    if event.name == self._goal and profile.node is not None:
                        profile.goal_reached = True
            elif event.node_id:
                if self._about_an_earlier_send(profile, event):
                    # counted as received, but it cannot satisfy a wait on the latest send
                    state.counts.interaction(event.kind)
                    continue
                profile.interactions.setdefault(event.node_id, []).append(event.kind)
            profile.nudged = True
            state.counts.interaction(event.kind)
        self._woken = True

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self) -> None:
        """Stop taking steps; the steps in flight settle first."""
        self._state.cancelled = True
        self._woken = True

    @workflow.signal(name=PROMOTE_SIGNAL)
    def promote(self, promotion: BranchPromotion) -> None:
        """Profiles reaching the split from now on take its winner; the first word stands
        (the run and the store record one promotion per split)."""
        self._state.promotions.setdefault(promotion.node_id, promotion.branch)

    @workflow.signal(name=REPORT_REQUEST_SIGNAL)
    def report_requested(self) -> None:
        """The run that started this cohort continues as new: only a report reaches the
        next run."""
        self._report_success = True

    @workflow.query
    def counts(self) -> dict[str, int]:
        return dict(self._state.counts)

    @workflow.query
    def progress(self) -> CohortProgress:
        return CohortProgress(
            positions=self._state.positions(),
            counts=dict(self._state.counts),
            cancelled=self._state.cancelled,
            promotions=dict(self._state.promotions),
        )

    @workflow.run
    async def run(self, cohort: CohortInput) -> CohortResult:
        """Interpret the journey, then report the end (its counts, or what failed it) to the
        run that asked for reports: a failure always, a success once the run has asked (it
        is about to continue as new, and the next run counts the report, not the child's
        completion)."""
        try:
            result = await self._interpret(cohort)
        except (FailureError, asyncio.CancelledError) as error:
            # only what fails the workflow: other errors fail the task, which is retried
            counts = CohortResult(counts=dict(self._state.counts), stopped=self._state.stopped)
            await self._report(cohort, counts, _described(error))
            raise
        await self._report(cohort, result, None)
        return result

    async def _report(self, cohort: CohortInput, result: CohortResult, error: str | None) -> None:
        if cohort.report_to is None or (error is None and not self._report_success):
            return
        report = CohortReport(workflow.info().workflow_id, result, error)
        await self._tell_run(cohort, COHORT_REPORT_SIGNAL, report)

    @staticmethod
    async def _tell_run(cohort: CohortInput, signal: str, word: CohortReport | str) -> None:
        assert cohort.report_to is not None  # asked only of cohorts that report to a run
        try:
            await workflow.get_external_workflow_handle(cohort.report_to).signal(signal, word)
        except FailureError as failure:
            # the run has closed (terminated): nobody is left to listen
            workflow.logger.warning("run %s took no %s: %s", cohort.report_to, signal, failure)

    @staticmethod
    def _parks_until(wake: datetime | None, cohort: CohortInput) -> bool:
        """Whether sleeping until ``wake`` (None: until a signal) is a long wait."""
        return wake is None or wake - workflow.now() >= cohort.options.cohort_parks_after

    async def _interpret(self, cohort: CohortInput) -> CohortResult:
        journey = cohort.journey
        state = self._state
        context = CohortContext(
            run_id=cohort.run_id,
            workflow_id=workflow.info().workflow_id,
            journey=journey,
            state=state,
            options=cohort.options,
            facts=cohort.facts,
            local_delivery=cohort.local_delivery,
        )
        if cohort.snapshot is None and not cohort.triggered and journey.listened_events():
            # custom events find a running profile through its "entered" row
            entered = [
                JourneyEventRecord(profile_id=pid, kind="entered", key=f"{pid}:entered")
                for pid in state.profiles
            ]
            self._spawn(context.record(entered), [])
        steps_now = 0
        while True:
            self._leave_on_goal(context)
            groups = (
                {}
                if state.cancelled
                else state.ready_by_node(workflow.now(), self._busy, self._event_nodes)
            )
            if groups and self._tasks and not self._steps_may_overlap():
                await self._settle_all()
                continue
            if groups:
                steps_now += 1
                if steps_now > MAX_STEPS_PER_INSTANT:
                    raise ApplicationError(
                        f"journey {journey.id!r} loops without waiting at "
                        f"{', '.join(sorted(groups))}",
                        type="JourneySpins",
                        non_retryable=True,
                    )
                for node_id, ids in groups.items():
                    node = journey.node(node_id)
                    step = advance(context, node, ids)
                    if blocks(node):
                        self._spawn(step, ids)
                    else:
                        await step
                continue
            if not self._tasks and (state.cancelled or not state.active()):
                break
            if not self._tasks and self._history_full(cohort):
                workflow.continue_as_new(
                    dataclasses.replace(
                        cohort,
                        snapshot=state.snapshot(),
                        report_only_when_asked=not self._report_success,
                        report_parking=self._report_parking,
                    )
                )
            steps_now = 0
            wake = state.next_wake(self._busy)
            if self._tasks and wake is not None and not self._steps_may_overlap():
                await self._settle_all()
                continue
            if self._report_parking and not self._tasks and self._parks_until(wake, cohort):
                self._report_parking = False
                await self._tell_run(cohort, COHORT_PARKED_SIGNAL, workflow.info().workflow_id)
            await self._sleep_until(wake)
            self._reap()
        if state.cancelled:
            state.counts.left(Left.CANCELLED, sum(1 for p in state.profiles.values() if p.node))
        return CohortResult(counts=dict(state.counts), stopped=state.stopped)

    def _leave_on_goal(self, context: CohortContext) -> None:
        """Profiles whose goal event arrived leave now, unless a step of theirs is in flight;
        the exits of this pass are recorded in one activity."""
        state = self._state
        leaving = [
            pid
            for pid, p in state.profiles.items()
            if p.goal_reached and p.node is not None and pid not in self._busy
        ]
        if not leaving:
            return
        records = []
        for pid in leaving:
            profile = state.profiles[pid]
            records.append(
                JourneyEventRecord(
                    profile_id=pid,
                    kind="goal",
                    key=f"{pid}:goal:{profile.events.get(self._goal or '', 0)}",
                    node_id=profile.node,
                    detail=self._goal,
                )
            )
            profile.goal_reached = False
            state.move(pid, None, leaving=Left.GOAL)
        self._spawn(context.record(records), [])

    @staticmethod
    def _about_an_earlier_send(profile: ProfileState, event: InteractionEvent) -> bool:
        """Whether the interaction names another send of its node than the profile's latest
        (a late open of the first pass through a loop, or of an earlier entry's send). Events
        without a visit are taken for the latest send, as they always were; asked only for
        events that carry one, so histories without them carry no patch marker."""
        if event.visit is None or event.node_id is None:
            return False
        if not workflow.patched(PATCH_INTERACTION_VISITS):
            return False
        return not profile.is_latest_send(event.node_id, event.visit)

    def _spawn(self, step: Awaitable[None], profile_ids: list[str]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(step)
        self._tasks[task] = profile_ids
        self._busy.update(profile_ids)

    def _reap(self) -> None:
        """Take finished steps off the books; a failed step fails the cohort."""
        for task in [t for t in self._tasks if t.done()]:
            self._busy.difference_update(self._tasks.pop(task))
            task.result()

    async def _settle_all(self) -> None:
        await workflow.wait_condition(lambda: all(t.done() for t in self._tasks))
        self._reap()

    def _history_full(self, cohort: CohortInput) -> bool:
        return history_full(cohort.options.cohort_history_limit) and workflow.patched(
            PATCH_CONTINUE_AS_NEW
        )

    def _steps_may_overlap(self) -> bool:
        """Whether the cohort may take a step (or set a timer) while another step is in
        flight. Histories recorded before this was so let every step settle first. Asked only
        where the two differ, so cohorts that never overlap steps carry no patch marker."""
        return workflow.patched(PATCH_CONCURRENT_STEPS)

    async def _sleep_until(self, wake: datetime | None) -> None:
        """Sleep until the earliest profile timer, a finished step, or a signal."""
        self._woken = False
        timeout = max(wake - workflow.now(), timedelta(0)) if wake else None
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._woken or any(t.done() for t in self._tasks), timeout=timeout
            )


def _described(error: BaseException) -> str:
    """What failed a cohort, with the causes Temporal wraps it in (an activity's error)."""
    parts: list[str] = []
    cause: BaseException | None = error
    while cause is not None and len(parts) < 3:
        parts.append(str(cause) or type(cause).__name__)
        cause = cause.__cause__
    return ": ".join(parts)
