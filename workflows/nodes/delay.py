"""The delay node: wait a fixed time, then go on."""

from __future__ import annotations

from temporalio import workflow

from workflows.nodes.context import CohortContext

with workflow.unsafe.imports_passed_through():
    from tidings.journeys.model import DelayNode


async def advance_delay(context: CohortContext, node: DelayNode, profile_ids: list[str]) -> None:
    """First call: start each profile's timer. When it is due: move the profile on."""
    now = workflow.now()
    for profile_id in profile_ids:
        profile = context.state.profiles[profile_id]
        if not profile.armed:
            profile.armed = True
            profile.wake_at = now + node.duration
        else:
            profile.count_visit(node.id)
            context.state.move(profile_id, node.next)
