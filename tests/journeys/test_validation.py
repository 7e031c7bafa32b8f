from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tidings.journeys import JourneyInvalid, load_definition, parse_definition
from tidings.journeys.durations import parse_duration
from tidings.journeys.render import RenderError, render_message


def journey(*nodes: dict[str, object], **extra: object) -> dict[str, object]:
    return {"id": "j", "name": "J", "app": "demo", "nodes": list(nodes), **extra}


def push(node_id: str, **fields: object) -> dict[str, object]:
    return {"id": node_id, "type": "push", "content": {"title": "t", "body": "b"}, **fields}


def issues(data: dict[str, object]) -> list[str]:
    with pytest.raises(JourneyInvalid) as caught:
        parse_definition(data)
    return [str(issue) for issue in caught.value.issues]


def test_a_valid_journey_parses() -> None:
    definition = parse_definition(
        journey(push("a", next="z", ttl="2h"), {"id": "z", "type": "exit"})
    )
    assert definition.start_node == "a"
    assert definition.nodes[0].ttl == timedelta(hours=2)  # type: ignore[union-attr]


def test_every_problem_is_reported_with_node_and_field() -> None:
    found = issues(
        journey(
            push("a", next="missing", ttl="soon"),
            {"id": "b", "type": "exit"},
            {"id": "c", "type": "teleport"},
        )
    )
    assert any("node 'a', ttl" in i and "not a duration" in i for i in found)
    assert any("node 'c'" in i and "type" in i for i in found)


def test_graph_problems_name_the_node() -> None:
    found = issues(journey(push("a", next="missing"), {"id": "b", "type": "exit"}))
    assert "node 'a', next: names no node: 'missing'" in found
    assert "node 'b', id: is unreachable from the start node" in found


def test_oversized_payload_fails_validation_naming_the_node() -> None:
    big = push("a")
    big["content"] = {"title": "t", "body": "é" * 2100}  # 4200 bytes in UTF-8
    found = issues(journey(big))
    assert any(i.startswith("node 'a', content: the payload is") and "4096" in i for i in found)


def test_template_errors_are_found_before_a_run() -> None:
    bad = push("a")
    bad["content"] = {"title": "{{ first_name", "body": "b"}
    assert any("node 'a', content.title: template error" in i for i in issues(journey(bad)))


def test_rendering_is_per_profile_and_strict() -> None:
    definition = parse_definition(journey(push("a", content={"title": "Hi {{ name }}"})))
    content = definition.nodes[0].content  # type: ignore[union-attr]
    assert render_message(content, None, {"attributes": {"name": "Ann"}}).title == "Hi Ann"
    with pytest.raises(RenderError, match="name"):
        render_message(content, None, {"attributes": {}})


def test_templates_cannot_escape_the_sandbox() -> None:
    definition = parse_definition(
        journey(push("a", content={"title": "{{ ''.__class__.__mro__ }}"}))
    )
    content = definition.nodes[0].content  # type: ignore[union-attr]
    with pytest.raises(RenderError):
        render_message(content, None, {"attributes": {}})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("1d", 86400), (12, 12), ("PT1H", 3600)],
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_files_load_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "j.yaml"
    path.write_text("id: j\nname: J\napp: demo\nnodes:\n  - {id: a, type: exit}\n")
    assert load_definition(path).id == "j"
    path.write_text("id: [")
    with pytest.raises(JourneyInvalid, match="file"):
        load_definition(path)
