"""What validation can still read of a definition pydantic rejects.

A file with a bad duration on one node and an unknown ``next`` on another must report both:
pydantic stops at the first, so the graph checks run on what can be read instead. Nodes that
validate on their own are kept as they are; a node pydantic rejects becomes a *shell* of its
type that keeps only the fields that can be read (its id, its exits, the push it names), so
the graph around it can still be checked. The node checks that need a whole node (content,
timeouts, percentages) skip shells: pydantic has already said what is wrong with them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from tidings.journeys.durations import Duration
from tidings.journeys.model import (
    BestHourNode,
    ConditionNode,
    DelayNode,
    ExitNode,
    Goal,
    JourneyDefinition,
    Node,
    PushNode,
    QuietHours,
    RandomSplitNode,
    SplitBranch,
    Trigger,
    WaitForNode,
    WaitUntilNode,
)

_NODE: TypeAdapter[Node] = TypeAdapter(Node)
_DURATION: TypeAdapter[timedelta] = TypeAdapter(Duration)
_CLASSES: dict[str, type[BaseModel]] = {
    "push": PushNode,
    "delay": DelayNode,
    "wait_until": WaitUntilNode,
    "best_hour": BestHourNode,
    "wait_for": WaitForNode,
    "condition": ConditionNode,
    "random_split": RandomSplitNode,
    "exit": ExitNode,
}
# fields a shell keeps when they hold a string: where the node sends profiles, and the push
# or event a wait_for names
_NAMED_FIELDS = ("next", "matched", "timed_out", "then", "otherwise", "push", "event")
_SETTINGS: dict[str, type[BaseModel]] = {
    "quiet_hours": QuietHours,
    "goal": Goal,
    "trigger": Trigger,
}


@dataclass(frozen=True)
class ReadablePart:
    # built without validation: the nodes that validate, and shells of the others
    definition: JourneyDefinition
    # indexes (in ``definition.nodes``) of the shells
    unreadable: frozenset[int]
    # a node has no id or an unknown type: where it leads cannot be read, so whether the
    # nodes after it are reachable cannot be told
    opaque: bool


def readable_part(data: Any) -> ReadablePart | None:
    """The readable part of a definition pydantic rejected; None when it has no nodes to
    check (not a mapping, no node list, no node with an id)."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        return None
    nodes: list[Any] = []
    unreadable: set[int] = set()
    opaque = False
    for raw in data["nodes"]:
        try:
            nodes.append(_NODE.validate_python(raw))
            continue
        except ValidationError:
            pass
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            opaque = True
            continue
        shell = _shell(raw)
        if shell is None:
            opaque = True
            shell = ExitNode.model_construct(id=raw["id"], type="exit")
        unreadable.add(len(nodes))
        nodes.append(shell)
    if not nodes:
        return None
    start = data.get("start")
    settings: dict[str, Any] = {name: _setting(name, data.get(name)) for name in _SETTINGS}
    definition = JourneyDefinition.model_construct(
        nodes=nodes, start=start if isinstance(start, str) else None, **settings
    )
    return ReadablePart(definition, frozenset(unreadable), opaque)


def _shell(raw: dict[str, Any]) -> BaseModel | None:
    """A node of the raw node's type holding only its readable fields (None: unknown type)."""
    node_type = raw.get("type")
    cls = _CLASSES.get(node_type) if isinstance(node_type, str) else None
    if cls is None:
        return None
    fields: dict[str, Any] = {"id": raw["id"], "type": node_type}
    for name in _NAMED_FIELDS:
        if name in cls.model_fields and isinstance(raw.get(name), str):
            fields[name] = raw[name]
    if cls is DelayNode:
        # an unreadable duration is left out: the loop check takes the delay for a wait
        with contextlib.suppress(ValidationError):
            fields["duration"] = _DURATION.validate_python(raw.get("duration"))
    if cls is RandomSplitNode:
        branches = raw.get("branches")
        fields["branches"] = [
            SplitBranch.model_construct(
                percent=0, next=b["next"] if isinstance(b.get("next"), str) else None
            )
            for b in (branches if isinstance(branches, list) else [])
            if isinstance(b, dict)
        ]
    return cls.model_construct(**fields)


def _setting(name: str, value: Any) -> BaseModel | None:
    """A journey setting as pydantic reads it, or None when it cannot (already reported)."""
    if value is None:
        return None
    try:
        return _SETTINGS[name].model_validate(value)
    except ValidationError:
        return None
