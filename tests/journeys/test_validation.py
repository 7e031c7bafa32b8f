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
    # the schema error does not hide the graph's: the unknown next is reported too
    assert "node 'a', next: names no node: 'missing'" in found


def test_graph_checks_run_on_what_can_be_read_beside_schema_errors() -> None:
    found = issues(
        journey(
            push("a", next="wait"),
            {
                "id": "wait",
                "type": "wait_for",
                "interaction": "opened",
                "push": "nowhere",
                "timeout": "forever",  # unreadable: the node is checked for its edges only
                "matched": "gone",
                "timed_out": "pause",
            },
            {"id": "pause", "type": "delay", "duration": "later", "next": "a"},
            {"id": "lost", "type": "exit"},
            push("b", next="b", ttl=-3),
        )
    )
    assert found[:3] == [
        "node 'wait', timeout: Value error, 'forever' is not a duration; write e.g. 30s, 5m, "
        "2h, 1d, 1h30m or PT1H",
        "node 'pause', duration: Value error, 'later' is not a duration; write e.g. 30s, 5m, "
        "2h, 1d, 1h30m or PT1H",
        "node 'b', ttl: Value error, a duration cannot be negative",
    ]
    assert set(found[3:]) == {
        "node 'wait', matched: names no node: 'gone'",
        "node 'lost', id: is unreachable from the start node",
        "node 'b', id: is unreachable from the start node",
        "node 'wait', push: names no earlier push: there is no node 'nowhere'",
        # a push looping on itself never waits; the delay with an unreadable duration is
        # taken for a wait, so the a → wait → pause loop is not reported
        "node 'b', next: is on a loop with no wait in it (b → b); add a delay, wait_until or "
        "wait_for to the loop",
    }


def test_a_field_pydantic_rejects_is_not_reported_twice() -> None:
    found = issues(journey(push("a", next="Not a node id!"), {"id": "b", "type": "exit"}))
    about_next = [i for i in found if i.startswith("node 'a', next")]
    assert len(about_next) == 1
    assert "pattern" in about_next[0]
    assert "node 'b', id: is unreachable from the start node" in found


def test_unknown_node_types_keep_their_ids_for_the_other_nodes() -> None:
    found = issues(
        journey(push("a", next="c"), {"id": "c", "type": "teleport", "next": "z"}, push("z"))
    )
    assert len(found) == 1
    assert found[0].startswith("node 'c', node: Input tag 'teleport'")


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


def test_a_journey_names_its_audience_and_a_triggered_one_cannot() -> None:
    base = {
        "id": "sale",
        "name": "Sale",
        "app": "shop",
        "nodes": [{"id": "hello", "type": "push", "content": {"title": "t", "body": "b"}}],
    }
    journey = parse_definition(base | {"audience": {"where": ["plan=pro", "age>=18"]}})
    assert journey.audience is not None
    assert [(p.attribute, p.op, p.value) for p in journey.audience.where] == [
        ("plan", "eq", "pro"),
        ("age", "gte", 18),
    ]
    with pytest.raises(JourneyInvalid) as bad_filter:
        parse_definition(base | {"audience": {"where": ["plan"]}})
    assert [(i.node, i.field) for i in bad_filter.value.issues] == [(None, "audience.where.0")]
    with pytest.raises(JourneyInvalid) as triggered:
        parse_definition(base | {"trigger": {"event": "signed_up"}, "audience": {"app": "shop"}})
    assert [(i.node, i.field) for i in triggered.value.issues] == [(None, "audience")]


def test_a_journey_without_an_audience_is_stored_as_before() -> None:
    """A definition saved before journeys named their audience stays equal to itself."""
    data = {
        "id": "sale",
        "name": "Sale",
        "app": "shop",
        "nodes": [{"id": "hello", "type": "push", "content": {"title": "t", "body": "b"}}],
    }
    assert "audience" not in parse_definition(data).model_dump(mode="json")
    named = parse_definition(data | {"audience": {"app": "shop"}}).model_dump(mode="json")
    assert named["audience"] == {"app": "shop", "where": []}
