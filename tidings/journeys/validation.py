"""Journey validation that reports *every* problem with the node id and field it concerns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tidings.journeys.model import JourneyDefinition, PushNode
from tidings.journeys.render import preview_message
from tidings.push.message import APNS_MAX_PAYLOAD_BYTES, apns_payload, encoded_size

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
    """Model and check a definition; raise JourneyInvalid listing every problem."""
    try:
        definition = JourneyDefinition.model_validate(data)
    except ValidationError as error:
        raise JourneyInvalid(_pydantic_issues(data, error)) from None
    issues = check(definition)
    if issues:
        raise JourneyInvalid(issues)
    return definition


def load_definition(path: Path) -> JourneyDefinition:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise JourneyInvalid([JourneyIssue(None, "file", f"{path}: {error.strerror}")]) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise JourneyInvalid([JourneyIssue(None, "file", f"{path}: {error}")]) from None
    return parse_definition(data)


def check(definition: JourneyDefinition) -> list[JourneyIssue]:
    """The graph checks pydantic cannot express."""
    issues: list[JourneyIssue] = []
    seen: set[str] = set()
    for node in definition.nodes:
        if node.id in seen:
            issues.append(JourneyIssue(node.id, "id", "is used by more than one node"))
        seen.add(node.id)
    if definition.start and definition.start not in seen:
        issues.append(JourneyIssue(None, "start", f"names no node: {definition.start!r}"))
    for node in definition.nodes:
        for field, target in _edges(node):
            if target not in seen:
                issues.append(JourneyIssue(node.id, field, f"names no node: {target!r}"))
        if isinstance(node, PushNode):
            issues.extend(_check_push(node))
    reachable = _reachable(definition)
    for node in definition.nodes:
        if node.id not in reachable:
            issues.append(JourneyIssue(node.id, "id", "is unreachable from the start node"))
    return issues


def _edges(node: Any) -> list[tuple[str, str]]:
    edges: list[tuple[str, str]] = []
    for field in ("next",):
        target = getattr(node, field, None)
        if target:
            edges.append((field, target))
    return edges


def _reachable(definition: JourneyDefinition) -> set[str]:
    ids = {node.id for node in definition.nodes}
    todo = [definition.start_node] if definition.start_node in ids else []
    reached: set[str] = set()
    while todo:
        current = todo.pop()
        if current in reached or current not in ids:
            continue
        reached.add(current)
        todo.extend(target for _, target in _edges(definition.node(current)))
    return reached


def _check_push(node: PushNode) -> list[JourneyIssue]:
    message, problems = preview_message(node)
    issues = [JourneyIssue(node.id, f"content.{field}", text) for field, text in problems]
    if message is not None:
        size = encoded_size(apns_payload(message, PREVIEW_TRACKING_ID))
        if size > APNS_MAX_PAYLOAD_BYTES:
            issues.append(
                JourneyIssue(
                    node.id,
                    "content",
                    f"the payload is {size} bytes in UTF-8, over the providers' "
                    f"{APNS_MAX_PAYLOAD_BYTES}-byte limit",
                )
            )
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


_NODE_TYPES = {"push", "delay", "exit"}
