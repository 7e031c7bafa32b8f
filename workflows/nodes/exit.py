"""The exit node: the profile leaves the journey."""

from __future__ import annotations

from temporalio import workflow

from workflows.counts import Left
from workflows.nodes.context import CohortContext

with workflow.unsafe.imports_passed_through():
    from tidings.journeys.model import ExitNode


async def advance_exit(context: CohortContext, node: ExitNode, profile_ids: list[str]) -> None:
    for profile_id in profile_ids:
        context.state.move(profile_id, None, leaving=Left.EXITED)
