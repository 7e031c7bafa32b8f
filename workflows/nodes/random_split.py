"""The random split node: a branch per profile, drawn from a hash of journey, node and
profile, so the draw is the same on replay, on re-entry and in every run of the journey.

A split that is an experiment records each profile's branch (so conversions are attributed
to the branch the profile took), and once a winner is promoted (by signal, never by reading
the store here) every profile reaching it takes the winner."""

from __future__ import annotations

import hashlib

from temporalio import workflow

from workflows.counts import Counts
from workflows.nodes.context import CohortContext

with workflow.unsafe.imports_passed_through():
    from activities.contracts import JourneyEventRecord
    from tidings.journeys.model import RandomSplitNode

# Experiments are new behaviour of the split (DESIGN.md decision 7); asked only at splits
# that are experiments, so no other history carries the marker.
PATCH_SPLIT_EXPERIMENTS = "split-experiments"


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


def is_experiment(node: RandomSplitNode) -> bool:
    return node.experiment is not None and workflow.patched(PATCH_SPLIT_EXPERIMENTS)


async def advance_random_split(
    context: CohortContext, node: RandomSplitNode, profile_ids: list[str]
) -> None:
    experiment = is_experiment(node)
    promoted = context.state.promotions.get(node.id) if experiment else None
    if promoted is not None and not 0 <= promoted < len(node.branches):
        promoted = None  # a promotion of a branch the split lacks is ignored
    records: list[JourneyEventRecord] = []
    counts = context.state.counts
    for profile_id in profile_ids:
        profile = context.state.profiles[profile_id]
        if promoted is None:
            index = branch_for(node, draw(context.journey.id, node.id, profile_id))
        else:
            index = promoted
            counts[Counts.promoted_key(node.id)] += 1
        counts[Counts.branch_key(node.id, index)] += 1
        if experiment:
            records.append(
                JourneyEventRecord(
                    profile_id=profile_id,
                    kind="split" if promoted is None else "promoted",
                    key=f"{profile_id}:split:{node.id}:{profile.visit_of(node.id)}",
                    node_id=node.id,
                    detail=str(index),
                )
            )
        profile.count_visit(node.id)
        context.state.move(profile_id, node.branches[index].next)
    await context.record(records)
