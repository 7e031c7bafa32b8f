"""A journey drawn as a graph: every node once, every exit an edge labelled with its name, a
node further from the start in a later column, a loop back drawn below the nodes."""

from __future__ import annotations

from tidings.console.graph import draw
from tidings.journeys.validation import parse_definition


def test_every_node_and_exit_is_drawn_in_columns_by_distance() -> None:
    journey = parse_definition(
        {
            "id": "j",
            "name": "J",
            "app": "demo",
            "nodes": [
                {"id": "hello", "type": "push", "content": {"title": "x"}, "next": "wait"},
                {
                    "id": "wait",
                    "type": "wait_for",
                    "interaction": "opened",
                    "push": "hello",
                    "timeout": "1h",
                    "matched": "done",
                    "timed_out": "again",
                },
                {"id": "again", "type": "delay", "duration": "1d", "next": "hello"},
                {"id": "done", "type": "exit"},
            ],
        }
    )
    graph = draw(journey)
    x = {node.id: node.x for node in graph.nodes}
    assert [node.id for node in graph.nodes] == ["hello", "wait", "again", "done"]
    assert x["hello"] < x["wait"] < x["again"] == x["done"]
    edges = {(e.source, e.target): e for e in graph.edges}
    assert set(edges) == {
        ("hello", "wait"),
        ("wait", "done"),
        ("wait", "again"),
        ("again", "hello"),
    }
    assert edges["wait", "done"].label == "matched"
    assert edges["wait", "again"].label == "timed_out"
    assert edges["hello", "wait"].label == ""
    back = edges["again", "hello"]  # a loop back, under the nodes
    assert int(back.label_y) > max(node.y for node in graph.nodes)
    assert graph.width >= max(x.values()) + graph.node_w


def test_split_branches_are_labelled_by_their_index() -> None:
    journey = parse_definition(
        {
            "id": "j",
            "name": "J",
            "app": "demo",
            "nodes": [
                {
                    "id": "test",
                    "type": "random_split",
                    "branches": [{"percent": 30, "next": "a"}, {"percent": 70, "next": "b"}],
                },
                {"id": "a", "type": "exit"},
                {"id": "b", "type": "exit"},
            ],
        }
    )
    labels = sorted(edge.label for edge in draw(journey).edges)
    assert labels == ["branch 0", "branch 1"]
