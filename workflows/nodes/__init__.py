"""One small handler per node type: it advances every profile standing on the node."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow

from workflows.nodes.context import CohortContext
from workflows.nodes.delay import advance_delay
from workflows.nodes.exit import advance_exit
from workflows.nodes.push import advance_push

with workflow.unsafe.imports_passed_through():
    from tidings.journeys.model import Node

Handler = Callable[[CohortContext, Node, list[str]], Awaitable[None]]

HANDLERS: dict[str, Handler] = {
    "push": advance_push,  # type: ignore[dict-item]
    "delay": advance_delay,  # type: ignore[dict-item]
    "exit": advance_exit,  # type: ignore[dict-item]
}
