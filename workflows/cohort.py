"""The cohort workflow: the journey interpreter over a few hundred profiles at once.

Profiles standing on the same node advance together through one handler call (for a push
node: one batch activity), so a push costs a small fraction of a Temporal action. A cohort
of one profile is the per-profile case used by triggered journeys.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

from workflows.inputs import CohortInput, CohortResult
from workflows.nodes import HANDLERS
from workflows.nodes.context import CohortContext
from workflows.state import CohortState, ProfileState


@workflow.defn(name="JourneyCohort")
class CohortWorkflow:
    @workflow.run
    async def run(self, cohort: CohortInput) -> CohortResult:
        journey = cohort.journey
        state = CohortState(
            profiles={pid: ProfileState(node=journey.start_node) for pid in cohort.profile_ids}
        )
        state.counts["profiles"] = len(cohort.profile_ids)
        context = CohortContext(
            run_id=cohort.run_id,
            workflow_id=workflow.info().workflow_id,
            journey=journey,
            state=state,
            options=cohort.options,
        )
        while groups := state.ready_by_node():
            await asyncio.gather(
                *(
                    HANDLERS[journey.node(node_id).type](context, journey.node(node_id), ids)
                    for node_id, ids in groups.items()
                )
            )
        return CohortResult(counts=dict(state.counts), stopped=state.stopped)
