"""A journey version drawn as a graph: nodes in columns by their distance from the start,
edges labelled with the exit they leave by. Laid out here and drawn as SVG by the template,
so the page needs no script to show it."""

from __future__ import annotations

from dataclasses import dataclass, field

from tidings.journeys.model import JourneyDefinition, PushNode
from tidings.journeys.validation import edges

NODE_W = 250
NODE_H = 64
GAP_X = 60
GAP_Y = 26
MARGIN = 16


@dataclass
class DrawnNode:
    id: str
    type: str
    label: str
    x: int
    y: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def counts_text(self) -> str:
        return " · ".join(f"{name} {value}" for name, value in self.counts.items())


@dataclass
class DrawnEdge:
    source: str
    target: str
    label: str
    path: str
    label_x: int
    label_y: int


@dataclass
class DrawnGraph:
    nodes: list[DrawnNode]
    edges: list[DrawnEdge]
    width: int
    height: int
    node_w: int = NODE_W
    node_h: int = NODE_H


def _columns(definition: JourneyDefinition) -> dict[str, int]:
    """Each node's column: its shortest distance from the start (unreachable ones last)."""
    depth = {definition.start_node: 0}
    todo = [definition.start_node]
    ids = {node.id for node in definition.nodes}
    while todo:
        current = todo.pop(0)
        if current not in ids:
            continue
        for _, target in edges(definition.node(current)):
            if target not in depth:
                depth[target] = depth[current] + 1
                todo.append(target)
    last = max(depth.values(), default=0) + 1
    return {node.id: depth.get(node.id, last) for node in definition.nodes}


def _label(node_type: str, node: object) -> str:
    if isinstance(node, PushNode):
        return (node.content.title or node.content.body or "")[:24]
    return node_type.replace("_", " ")


def draw(definition: JourneyDefinition) -> DrawnGraph:
    columns = _columns(definition)
    rows: dict[int, int] = {}
    placed: dict[str, DrawnNode] = {}
    for node in definition.nodes:
        column = columns[node.id]
        row = rows.get(column, 0)
        rows[column] = row + 1
        placed[node.id] = DrawnNode(
            id=node.id,
            type=node.type,
            label=node.name or _label(node.type, node),
            x=MARGIN + column * (NODE_W + GAP_X),
            y=MARGIN + row * (NODE_H + GAP_Y),
        )
    drawn_edges = []
    # loops back run under every node, so they cross none
    below = max(n.y for n in placed.values()) + NODE_H + GAP_Y // 2
    for node in definition.nodes:
        source = placed[node.id]
        for exit_name, target_id in edges(node):
            target = placed.get(target_id)
            if target is None:
                continue
            x1, y1 = source.x + NODE_W, source.y + NODE_H // 2
            x2, y2 = target.x, target.y + NODE_H // 2
            if x2 <= x1:  # a loop back: around below the nodes
                path = f"M{x1},{y1} C{x1 + 60},{below + GAP_Y} {x2 - 60},{below + GAP_Y} {x2},{y2}"
                label_x, label_y = (x1 + x2) // 2, below
            else:
                middle = (x1 + x2) // 2
                path = f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"
                label_x, label_y = middle, (y1 + y2) // 2 - 4
            label = "" if exit_name == "next" else exit_name.replace("branches.", "branch ")
            drawn_edges.append(
                DrawnEdge(node.id, target_id, label.replace(".next", ""), path, label_x, label_y)
            )
    width = MARGIN * 2 + (max(columns.values(), default=0) + 1) * (NODE_W + GAP_X)
    height = below + GAP_Y * 2
    return DrawnGraph(list(placed.values()), drawn_edges, width, height)
