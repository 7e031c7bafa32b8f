"""The wait_for node: an interaction with an earlier push, or a custom event, or the timeout.

Interactions count when they concern the named push's latest send (whenever they arrived);
custom events count when they arrive after the profile reached this node. An ``opened`` wait
is also satisfied by a click (a click opens the push).
"""

from __future__ import annotations

from temporalio import workflow

from workflows.counts import Counts
from workflows.nodes.context import CohortContext
from workflows.state import ProfileState

with workflow.unsafe.imports_passed_through():
    from tidings.journeys.model import WaitForNode

SATISFIED_BY = {"opened": ("opened", "clicked"), "clicked": ("clicked",)}


def matched(node: WaitForNode, profile: ProfileState) -> bool:
    if node.event is not None:
        return profile.events.get(node.event, 0) > profile.entered_seq
    if node.push is None or node.interaction is None:
        return False
    seen = profile.interactions.get(node.push, [])
    return any(kind in seen for kind in SATISFIED_BY[node.interaction])


async def advance_wait_for(
    context: CohortContext, node: WaitForNode, profile_ids: list[str]
) -> None:
    now = workflow.now()
    counts = context.state.counts
    for profile_id in profile_ids:
        profile = context.state.profiles[profile_id]
        if not profile.armed:
            profile.armed = True
            profile.wake_at = now + node.timeout
        profile.nudged = False
        if matched(node, profile):
            counts[Counts.wait_key(node.id, "matched")] += 1
            profile.count_visit(node.id)
            context.state.move(profile_id, node.matched)
        elif profile.wake_at is not None and profile.wake_at <= now:
            counts[Counts.wait_key(node.id, "timed_out")] += 1
            profile.count_visit(node.id)
            context.state.move(profile_id, node.timed_out)
