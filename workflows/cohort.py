"""The cohort workflow: the journey interpreter over a few hundred profiles at once.

Profiles standing on the same node advance together through one handler call (for a push
node: one batch activity), so a push costs a small fraction of a Temporal action. A cohort
of one profile is the per-profile case used by triggered journeys. Each profile keeps its own
position and timers; the workflow sleeps until the earliest timer or the next signal.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow

from workflows.inputs import CohortInput, CohortResult
from workflows.nodes import HANDLERS
from workflows.nodes.context import CohortContext
from workflows.state import CohortState, ProfileState

with workflow.unsafe.imports_passed_through():
    from activities.contracts import INTERACTIONS_SIGNAL, InteractionBatch


@workflow.defn(name="JourneyCohort")
class CohortWorkflow:
    def __init__(self) -> None:
        self._state = CohortState(profiles={})
        self._woken = False

    @workflow.signal(name=INTERACTIONS_SIGNAL)
    def interactions(self, batch: InteractionBatch) -> None:
        """Apply each event once, whatever the forwarder's retries."""
        for event in batch.events:
            if event.event_id in self._state.seen_events:
                continue
            self._state.seen_events.add(event.event_id)
            profile = self._state.profiles.get(event.profile_id)
            if profile is None:
                continue
            key = event.node_id or f"event:{event.name}"
            profile.interactions.setdefault(key, []).append(event.kind)
            self._state.counts[f"interaction.{event.kind}"] += 1
        self._woken = True

    @workflow.query
    def counts(self) -> dict[str, int]:
        return dict(self._state.counts)

    @workflow.run
    async def run(self, cohort: CohortInput) -> CohortResult:
        journey = cohort.journey
        state = self._state
        state.profiles = {pid: ProfileState(node=journey.start_node) for pid in cohort.profile_ids}
        state.counts["profiles"] = len(cohort.profile_ids)
        context = CohortContext(
            run_id=cohort.run_id,
            workflow_id=workflow.info().workflow_id,
            journey=journey,
            state=state,
            options=cohort.options,
        )
        while state.active():
            groups = state.ready_by_node(workflow.now())
            if groups:
                await asyncio.gather(
                    *(
                        HANDLERS[journey.node(node_id).type](context, journey.node(node_id), ids)
                        for node_id, ids in groups.items()
                    )
                )
                continue
            await self._sleep_until_due()
        return CohortResult(counts=dict(state.counts), stopped=state.stopped)

    async def _sleep_until_due(self) -> None:
        """Sleep until the earliest profile timer, or until a signal changes something."""
        wake = self._state.next_wake()
        self._woken = False
        timeout = max(wake - workflow.now(), timedelta(0)) if wake else None
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._woken, timeout=timeout)
