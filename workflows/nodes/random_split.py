"""The random split node: a branch per profile, drawn from a hash of journey, node and
profile, so the draw is the same on replay, on re-entry and in every run of the journey."""

from __future__ import annotations

import hashlib

from temporalio import workflow

from workflows.counts import Counts
from workflows.nodes.context import CohortContext

with workflow.unsafe.imports_passed_through():
    from tidings.journeys.model import RandomSplitNode


def draw(journey_id: str, node_id: str, profile_id: str) -> float:
    """A number in [0, 100), uniform over profiles."""
    digest = hashlib.sha256(f"{journey_id}\0{node_id}\0{profile_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 1_000_000 / 10_000


def branch_for(node: RandomSplitNode, value: float) -> int:
    total = 0.0
    for index, branch in enumerate(node.branches):
        total += branch.percent
        if value < total:
            return index
    return len(node.branches) - 1


async def advance_random_split(
    context: CohortContext, node: RandomSplitNode, profile_ids: list[str]
) -> None:
    for profile_id in profile_ids:
        index = branch_for(node, draw(context.journey.id, node.id, profile_id))
        context.state.counts[Counts.branch_key(node.id, index)] += 1
        context.state.profiles[profile_id].count_visit(node.id)
        context.state.move(profile_id, node.branches[index].next)
