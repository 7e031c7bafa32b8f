"""One small handler per node type: it advances every profile standing on the node.

Only the push node and the best_hour node (choosing its arrivals' hours) wait on an activity;
the cohort runs their steps as tasks, so a slow send never holds back profiles elsewhere in
the journey. The other handlers finish at once.
"""

from __future__ import annotations

from typing import assert_never

from temporalio import workflow

from workflows.nodes.best_hour import advance_best_hour
from workflows.nodes.condition import advance_condition
from workflows.nodes.context import CohortContext
from workflows.nodes.delay import advance_delay
from workflows.nodes.exit import advance_exit
from workflows.nodes.push import advance_push
from workflows.nodes.random_split import advance_random_split
from workflows.nodes.wait_for import advance_wait_for
from workflows.nodes.wait_until import advance_wait_until

with workflow.unsafe.imports_passed_through():
    from tidings.journeys.model import (
        BestHourNode,
        ConditionNode,
        DelayNode,
        ExitNode,
        PushNode,
        RandomSplitNode,
        WaitForNode,
        WaitUntilNode,
    )

AnyNode = (
    PushNode
    | DelayNode
    | WaitUntilNode
    | BestHourNode
    | WaitForNode
    | ConditionNode
    | RandomSplitNode
    | ExitNode
)


async def advance(context: CohortContext, node: AnyNode, profile_ids: list[str]) -> None:
    """Advance every profile in ``profile_ids``, all standing on ``node``, by one step."""
    match node:
        case PushNode():
            await advance_push(context, node, profile_ids)
        case DelayNode():
            await advance_delay(context, node, profile_ids)
        case WaitUntilNode():
            await advance_wait_until(context, node, profile_ids)
        case BestHourNode():
            await advance_best_hour(context, node, profile_ids)
        case WaitForNode():
            await advance_wait_for(context, node, profile_ids)
        case ConditionNode():
            await advance_condition(context, node, profile_ids)
        case RandomSplitNode():
            await advance_random_split(context, node, profile_ids)
        case ExitNode():
            await advance_exit(context, node, profile_ids)
        case _:
            assert_never(node)


def blocks(node: AnyNode) -> bool:
    """Whether the node's step waits on an activity: it runs as a task, its profiles busy
    meanwhile (a push; a best_hour wait choosing its hours; a split that is an experiment,
    recording each profile's branch)."""
    return isinstance(node, PushNode | BestHourNode) or (
        isinstance(node, RandomSplitNode) and node.experiment is not None
    )


def event_driven(node: AnyNode) -> bool:
    """Whether a custom event or an interaction can move the node on before its timer."""
    return isinstance(node, WaitForNode)
