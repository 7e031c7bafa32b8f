"""One small handler per node type: it advances every profile standing on the node.

Only the push node waits on an activity; the cohort runs its steps as tasks, so a slow send
never holds back profiles elsewhere in the journey. The other handlers finish at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow

from workflows.nodes.condition import advance_condition
from workflows.nodes.context import CohortContext
from workflows.nodes.delay import advance_delay
from workflows.nodes.exit import advance_exit
from workflows.nodes.push import advance_push
from workflows.nodes.random_split import advance_random_split
from workflows.nodes.wait_for import advance_wait_for
from workflows.nodes.wait_until import advance_wait_until

with workflow.unsafe.imports_passed_through():
    from tidings.journeys.model import Node

Handler = Callable[[CohortContext, Node, list[str]], Awaitable[None]]

HANDLERS: dict[str, Handler] = {
    "push": advance_push,  # type: ignore[dict-item]
    "delay": advance_delay,  # type: ignore[dict-item]
    "wait_until": advance_wait_until,  # type: ignore[dict-item]
    "wait_for": advance_wait_for,  # type: ignore[dict-item]
    "condition": advance_condition,  # type: ignore[dict-item]
    "random_split": advance_random_split,  # type: ignore[dict-item]
    "exit": advance_exit,  # type: ignore[dict-item]
}
# node types whose step waits on an activity: run as a task, its profiles busy meanwhile
BLOCKING_TYPES = frozenset({"push"})
# node types a custom event or an interaction can move on before their timer is due
EVENT_DRIVEN_TYPES = frozenset({"wait_for"})
