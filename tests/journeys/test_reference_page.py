"""docs/journeys.md, the journey language's reference, names every node type and every field
of the model, and its examples are valid journeys: a field added to the model without a line
in the reference fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel

from tidings.journeys.model import NODE_TYPES, JourneyDefinition, Node
from tidings.journeys.predicates import AttributePredicate, FactPredicate
from tidings.journeys.validation import parse_definition
from tidings.push.message import AndroidOptions, ApnsOptions

REFERENCE = Path(__file__).parents[2] / "docs" / "journeys.md"


def models() -> list[type[BaseModel]]:
    union = get_args(get_args(Node)[0])
    return [
        JourneyDefinition,
        *union,
        AttributePredicate,
        FactPredicate,
        ApnsOptions,
        AndroidOptions,
    ]


def every_field(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for candidate in _models_in(field.annotation):
            names |= every_field(candidate, seen)
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for argument in get_args(annotation):
        found += _models_in(argument)
    return found


def test_every_node_type_has_a_section() -> None:
    text = REFERENCE.read_text()
    for node_type in NODE_TYPES:
        assert f"### `{node_type}`" in text, node_type


def test_every_field_of_the_language_is_in_the_reference() -> None:
    text = REFERENCE.read_text()
    seen: set[type[BaseModel]] = set()
    names: set[str] = set()
    for model in models():
        names |= every_field(model, seen)
    missing = sorted(name for name in names if f"`{name}`" not in text and name != "type")
    assert missing == []


def test_the_whole_journey_example_is_valid() -> None:
    text = REFERENCE.read_text()
    first = re.search(r"## A whole journey\n\n```yaml\n(.*?)```", text, re.S)
    assert first is not None
    journey = parse_definition(yaml.safe_load(first.group(1)))
    assert [node.id for node in journey.nodes] == ["hello", "pause", "reminder"]


def test_every_node_example_is_a_valid_node() -> None:
    text = REFERENCE.read_text()
    checked = 0
    for block in re.findall(r"```yaml\n(- .*?)```", text, re.S):
        nodes = yaml.safe_load(block)
        ids = {node["id"] for node in nodes}
        exits = {"next", "matched", "timed_out", "then", "otherwise", "push", "node"}
        referenced = _referenced(nodes, exits) - ids
        stand_ins = [{"id": i, "type": "push", "content": {"title": "x"}} for i in referenced]
        journey: dict[str, Any] = {"id": "j", "name": "J", "app": "demo"}
        journey["nodes"] = [*stand_ins, *nodes]
        journey["start"] = stand_ins[0]["id"] if stand_ins else nodes[0]["id"]
        for stand_in in stand_ins:
            stand_in["next"] = nodes[0]["id"]
        definition = JourneyDefinition.model_validate(journey)
        assert definition.nodes
        checked += 1
    assert checked >= 7


def _referenced(value: Any, keys: set[str]) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key in keys and isinstance(item, str):
                found.add(item)
            else:
                found |= _referenced(item, keys)
    elif isinstance(value, list):
        for item in value:
            found |= _referenced(item, keys)
    return found
