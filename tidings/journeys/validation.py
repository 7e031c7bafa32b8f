"""Journey validation that reports *every* problem with the node id and field it concerns."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tidings.journeys.files import JourneyFileError, read_journey_data
from tidings.journeys.model import (
    NODE_TYPES,
    WAITING_TYPES,
    ConditionNode,
    DelayNode,
    Experiment,
    JourneyDefinition,
    Node,
    PushNode,
    RandomSplitNode,
    WaitForNode,
)
from tidings.journeys.predicates import FactPredicate
from tidings.journeys.readable import readable_part
from tidings.journeys.render import preview_message
from tidings.push.message import size_problem

PREVIEW_TRACKING_ID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class JourneyIssue:
    node: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"node {self.node!r}" if self.node else "journey"
        return f"{where}, {self.field}: {self.message}"


class JourneyInvalid(ValueError):
    def __init__(self, issues: list[JourneyIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(issue) for issue in issues))


def parse_definition(data: Any) -> JourneyDefinition:
    """Model and check a definition; raise JourneyInvalid listing every problem. When
    pydantic rejects some fields, the graph checks still run on what can be read, so one bad
    duration does not hide an unknown next node."""
    try:
        definition = JourneyDefinition.model_validate(data)
    except ValidationError as error:
        issues = _pydantic_issues(data, error)
        part = readable_part(data)
        if part is not None:
            reported = {(issue.node, issue.field) for issue in issues}
            issues += [
                issue
                for issue in check(part.definition, unreadable=part.unreadable, opaque=part.opaque)
                if (issue.node, issue.field) not in reported
            ]
        raise JourneyInvalid(issues) from None
    issues = check(definition)
    if issues:
        raise JourneyInvalid(issues)
    return definition


def load_definition(path: Path) -> JourneyDefinition:
    """A journey file (YAML, or JSON for a ``.json``), read under the limits of
    tidings.journeys.files (size, no YAML aliases), then modelled and checked."""
    try:
        data = read_journey_data(path)
    except JourneyFileError as error:
        raise JourneyInvalid([JourneyIssue(None, "file", str(error))]) from None
    return parse_definition(data)


def check(
    definition: JourneyDefinition,
    *,
    unreadable: Collection[int] = frozenset(),
    opaque: bool = False,
) -> list[JourneyIssue]:
    """The graph checks pydantic cannot express. On a partly readable definition
    (tidings.journeys.readable), ``unreadable`` are the indexes of the nodes pydantic
    rejected, checked for their edges only; with ``opaque``, some node's exits cannot be read,
    so reachability is not judged."""
    issues: list[JourneyIssue] = []
    readable = [n for i, n in enumerate(definition.nodes) if i not in unreadable]
    seen: set[str] = set()
    for node in definition.nodes:
        if node.id in seen:
            issues.append(JourneyIssue(node.id, "id", "is used by more than one node"))
        seen.add(node.id)
    if definition.start and definition.start not in seen:
        issues.append(JourneyIssue(None, "start", f"names no node: {definition.start!r}"))
    for node in definition.nodes:
        for field, target in edges(node):
            if target not in seen:
                issues.append(JourneyIssue(node.id, field, f"names no node: {target!r}"))
    for node in readable:
        if isinstance(node, PushNode):
            issues.extend(_check_push(node))
    if not opaque:
        reachable = _reachable(definition, definition.start_node)
        for node in definition.nodes:
            if node.id not in reachable:
                issues.append(JourneyIssue(node.id, "id", "is unreachable from the start node"))
    issues.extend(_check_loops(definition))
    issues.extend(_check_references(definition, readable))
    for index in sorted(unreadable):
        shell = definition.nodes[index]
        if isinstance(shell, WaitForNode) and shell.push is not None:
            problem = _earlier_push_problem(definition, shell.push, shell.id)
            if problem:
                issues.append(JourneyIssue(shell.id, "push", problem))
    issues.extend(_check_settings(definition))
    return issues


def edges(node: Node) -> list[tuple[str, str]]:
    """Every (field, target node) a node can send a profile to."""
    found: list[tuple[str, str | None]]
    if isinstance(node, WaitForNode):
        found = [("matched", node.matched), ("timed_out", node.timed_out)]
    elif isinstance(node, ConditionNode):
        found = [("then", node.then), ("otherwise", node.otherwise)]
    elif isinstance(node, RandomSplitNode):
        found = [(f"branches.{i}.next", b.next) for i, b in enumerate(node.branches)]
    else:
        found = [("next", getattr(node, "next", None))]
    return [(field, target) for field, target in found if target]


def _reachable(definition: JourneyDefinition, start: str) -> set[str]:
    ids = {node.id for node in definition.nodes}
    todo = [start] if start in ids else []
    reached: set[str] = set()
    while todo:
        current = todo.pop()
        if current in reached or current not in ids:
            continue
        reached.add(current)
        todo.extend(target for _, target in edges(definition.node(current)))
    return reached


def _waits(node: Node) -> bool:
    if isinstance(node, DelayNode):
        # a shell of a delay whose duration cannot be read is taken for a wait: its
        # duration is reported already, and may well be above 0
        duration: timedelta | None = getattr(node, "duration", None)
        return duration is None or duration > timedelta(0)
    return node.type in WAITING_TYPES


def _check_loops(definition: JourneyDefinition) -> list[JourneyIssue]:
    """A loop through no delay, wait_until or wait_for would send (or spin) without end:
    find the strongly connected parts of the graph of nodes that do not wait."""
    ids = {n.id for n in definition.nodes}
    graph = {
        n.id: [t for _, t in edges(n) if t in ids and not _waits(definition.node(t))]
        for n in definition.nodes
        if not _waits(n)
    }
    issues = []
    for component in _strongly_connected(graph):
        members = set(component)
        first = next(n for n in definition.nodes if n.id in members)
        if len(component) == 1 and first.id not in graph[first.id]:
            continue
        field = next(f for f, t in edges(first) if t in members)
        path = " → ".join([*_cycle_from(graph, first.id, members), first.id])
        issues.append(
            JourneyIssue(
                first.id,
                field,
                f"is on a loop with no wait in it ({path}); add a delay, wait_until or "
                "wait_for to the loop",
            )
        )
    return issues


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (journeys may be long)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = [t for t in graph[node] if t in graph]
            if child < len(targets):
                work.append((node, child + 1))
                target = targets[child]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _cycle_from(graph: dict[str, list[str]], start: str, members: set[str]) -> list[str]:
    """One cycle through ``start`` inside its component, for the message."""
    path = [start]
    parents: dict[str, str] = {}
    todo = [start]
    while todo:
        current = todo.pop(0)
        for target in graph[current]:
            if target == start:
                node = current
                tail = []
                while node != start:
                    tail.append(node)
                    node = parents[node]
                return path + list(reversed(tail))
            if target in members and target not in parents and target != start:
                parents[target] = current
                todo.append(target)
    return path


def _check_references(definition: JourneyDefinition, nodes: list[Node]) -> list[JourneyIssue]:
    """wait_for nodes and condition facts (of ``nodes``) that name a push must name an
    earlier one."""
    issues: list[JourneyIssue] = []
    for node in nodes:
        if isinstance(node, WaitForNode):
            issues.extend(_check_wait_for(definition, node))
        elif isinstance(node, ConditionNode):
            for index, predicate in enumerate(node.predicates):
                if isinstance(predicate, FactPredicate):
                    issues.extend(_check_fact(definition, node, f"predicates.{index}", predicate))
        elif isinstance(node, RandomSplitNode):
            total = sum(branch.percent for branch in node.branches)
            if abs(total - 100) > 1e-6:
                issues.append(
                    JourneyIssue(node.id, "branches", f"percentages add up to {total:g}, not 100")
                )
            if node.experiment is not None:
                issues.extend(_check_experiment(definition, node, node.experiment))
    return issues


# An experiment's window and check interval: long enough to mean something, short enough that
# a run ends in the lifetime of a journey.
MAX_EXPERIMENT_WINDOW = timedelta(days=90)
MIN_CHECK_EVERY = timedelta(seconds=1)


def _check_experiment(
    definition: JourneyDefinition, node: RandomSplitNode, experiment: Experiment
) -> list[JourneyIssue]:
    issues = []
    goal = experiment.goal
    if goal.event is not None:
        if goal.interaction is not None or goal.node is not None:
            issues.append(
                JourneyIssue(
                    node.id,
                    "experiment.goal",
                    "counts an interaction or a custom event, not both",
                )
            )
    elif goal.interaction is None:
        issues.append(
            JourneyIssue(
                node.id,
                "experiment.goal",
                "is missing: count an interaction ({interaction: opened, node: a push node}) "
                "or a custom event ({event: its name})",
            )
        )
    elif goal.node is not None:
        problem = _later_push_problem(definition, goal.node, node.id)
        if problem:
            issues.append(JourneyIssue(node.id, "experiment.goal.node", problem))
    elif not any(isinstance(definition.node(n), PushNode) for n in _reachable(definition, node.id)):
        issues.append(
            JourneyIssue(
                node.id,
                "experiment.goal.interaction",
                "no push comes after this split: there is nothing to open or click",
            )
        )
    if not timedelta(0) < experiment.window <= MAX_EXPERIMENT_WINDOW:
        issues.append(
            JourneyIssue(node.id, "experiment.window", "must be longer than 0s and at most 90 days")
        )
    if experiment.check_every < MIN_CHECK_EVERY:
        issues.append(JourneyIssue(node.id, "experiment.check_every", "must be at least 1s"))
    if experiment.promote == "auto" and definition.trigger is not None:
        issues.append(
            JourneyIssue(
                node.id,
                "experiment.promote",
                "auto needs a run over an audience: a triggered journey's entries are not "
                "promoted (use manual, and save a version once a winner is clear)",
            )
        )
    return issues


def _later_push_problem(definition: JourneyDefinition, push_id: str, split: str) -> str | None:
    try:
        target = definition.node(push_id)
    except KeyError:
        return f"names no push: there is no node {push_id!r}"
    if not isinstance(target, PushNode):
        return f"names no push: {push_id!r} is a {target.type} node"
    if push_id not in _reachable(definition, split):
        return f"names no push after this split: {push_id!r} does not come after it"
    return None


def _check_wait_for(definition: JourneyDefinition, node: WaitForNode) -> list[JourneyIssue]:
    issues = []
    if node.timeout <= timedelta(0):
        issues.append(JourneyIssue(node.id, "timeout", "must be longer than 0s"))
    if node.event is not None:
        if node.interaction is not None or node.push is not None:
            issues.append(
                JourneyIssue(
                    node.id, "event", "waits for a custom event or an interaction, not both"
                )
            )
        return issues
    if node.interaction is None or node.push is None:
        field = "push" if node.push is None else "interaction"
        issues.append(
            JourneyIssue(
                node.id,
                field,
                "is missing: wait for an interaction (interaction: opened or clicked, push: "
                "an earlier push node) or for a custom event (event: its name)",
            )
        )
        return issues
    problem = _earlier_push_problem(definition, node.push, node.id)
    if problem:
        issues.append(JourneyIssue(node.id, "push", problem))
    return issues


def _check_fact(
    definition: JourneyDefinition, node: ConditionNode, field: str, fact: FactPredicate
) -> list[JourneyIssue]:
    if fact.fact == "event":
        if fact.event is None:
            return [JourneyIssue(node.id, f"{field}.event", "is missing: name the custom event")]
        if fact.node is not None:
            return [JourneyIssue(node.id, f"{field}.node", "an event fact names no node")]
        return []
    if fact.event is not None:
        return [JourneyIssue(node.id, f"{field}.event", f"fact {fact.fact!r} takes no event")]
    if fact.node is None:
        if fact.fact == "had_valid_device":
            return []
        return [JourneyIssue(node.id, f"{field}.node", "is missing: name an earlier push node")]
    problem = _earlier_push_problem(definition, fact.node, node.id)
    return [JourneyIssue(node.id, f"{field}.node", problem)] if problem else []


def _earlier_push_problem(definition: JourneyDefinition, push_id: str, here: str) -> str | None:
    try:
        target = definition.node(push_id)
    except KeyError:
        return f"names no earlier push: there is no node {push_id!r}"
    if not isinstance(target, PushNode):
        return f"names no earlier push: {push_id!r} is a {target.type} node"
    if here not in _reachable(definition, push_id) or push_id == here:
        return f"names no earlier push: {push_id!r} does not come before this node"
    return None


def _check_settings(definition: JourneyDefinition) -> list[JourneyIssue]:
    issues = []
    quiet = definition.quiet_hours
    if quiet is not None and quiet.start == quiet.end:
        issues.append(
            JourneyIssue(None, "quiet_hours.end", "equals start: the window would be empty")
        )
    trigger = definition.trigger
    if trigger is not None:
        reentry = trigger.reentry
        if reentry.policy == "after" and (reentry.after is None or reentry.after <= timedelta(0)):
            issues.append(
                JourneyIssue(
                    None, "trigger.reentry.after", "policy 'after' needs a duration above 0s"
                )
            )
        if reentry.policy != "after" and reentry.after is not None:
            issues.append(
                JourneyIssue(
                    None,
                    "trigger.reentry.after",
                    f"is only read with policy 'after', not {reentry.policy!r}",
                )
            )
        if definition.goal is not None and definition.goal.event == trigger.event:
            issues.append(
                JourneyIssue(
                    None, "goal.event", "is the trigger's event: every profile would leave at once"
                )
            )
        if definition.audience is not None:
            issues.append(
                JourneyIssue(
                    None,
                    "audience",
                    "a journey with a trigger starts for the profile of each event; it takes "
                    "no audience",
                )
            )
    return issues


def _check_push(node: PushNode) -> list[JourneyIssue]:
    issues = _check_content(node, "content")
    for tag, variant in node.locales.items():
        issues.extend(
            _check_content(node.model_copy(update={"content": variant}), f"locales.{tag}")
        )
    return issues


def _check_content(node: PushNode, where: str) -> list[JourneyIssue]:
    message, problems = preview_message(node)
    issues = [JourneyIssue(node.id, f"{where}.{field}", text) for field, text in problems]
    if message is not None:
        # both providers' payloads, in UTF-8 bytes (tidings.push.message.size_problem)
        too_large = size_problem(message)
        if too_large is not None:
            issues.append(JourneyIssue(node.id, where, too_large))
    return issues


def _pydantic_issues(data: Any, error: ValidationError) -> list[JourneyIssue]:
    issues = []
    nodes = data.get("nodes") if isinstance(data, dict) else None
    for problem in error.errors():
        location = list(problem["loc"])
        node_id = None
        if len(location) >= 2 and location[0] == "nodes" and isinstance(location[1], int):
            index = location[1]
            if isinstance(nodes, list) and index < len(nodes) and isinstance(nodes[index], dict):
                node_id = str(nodes[index].get("id", f"#{index}"))
            else:
                node_id = f"#{index}"
            location = location[2:]
            # drop the discriminator tag pydantic inserts ("push", "exit", ...)
            if location and isinstance(location[0], str) and location[0] in _NODE_TYPES:
                location = location[1:]
        field = ".".join(str(part) for part in location) or "node"
        issues.append(JourneyIssue(node_id, field, problem["msg"]))
    return issues


_NODE_TYPES = set(NODE_TYPES)
