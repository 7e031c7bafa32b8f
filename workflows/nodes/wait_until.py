"""The wait_until node: wait for a local time of day on an allowed weekday."""

from __future__ import annotations

from temporalio import workflow

from workflows.nodes.context import CohortContext

with workflow.unsafe.imports_passed_through():
    from tidings.journeys.localtime import next_local_time
    from tidings.journeys.model import WaitUntilNode


async def advance_wait_until(
    context: CohortContext, node: WaitUntilNode, profile_ids: list[str]
) -> None:
    """First call: each profile's timer goes to the next matching local time in its own
    zone. When it is due: move the profile on."""
    now = workflow.now()
    for profile_id in profile_ids:
        profile = context.state.profiles[profile_id]
        if not profile.armed:
            profile.armed = True
            profile.wake_at = next_local_time(
                now, context.zone_of(profile_id), node.time, node.weekdays
            )
        else:
            profile.count_visit(node.id)
            context.state.move(profile_id, node.next)
