"""Segment definitions as written: one key per condition, the --where shorthand, bounds on
depth and size (the limit accepted, one more refused, naming where), and a journey audience
that names a segment alone."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.journeys.segments import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    SegmentInvalid,
    load_segment_text,
    parse_segment,
)
from tidings.journeys.validation import JourneyInvalid, parse_definition

PRO: dict[str, Any] = {"attribute": {"name": "plan", "op": "eq", "value": "pro"}}


def nested(depth: int) -> dict[str, Any]:
    """``depth`` combinators, each holding the next, around one test."""
    condition: dict[str, Any] = PRO
    for level in range(depth):
        condition = {"not": condition} if level % 2 else {"all": [condition]}
    return condition


def problems(data: Any) -> list[str]:
    with pytest.raises(SegmentInvalid) as caught:
        parse_segment(data)
    return [str(p) for p in caught.value.problems]


def test_a_definition_is_stored_as_written_out() -> None:
    written = load_segment_text(
        "any:\n  - attribute: plan=pro\n  - not: {device: {app: shop}}\n"
        "  - interaction: {kind: opened, within_days: 7}\n"
    )
    assert written.to_data() == {
        "any": [
            PRO,
            {"not": {"device": {"app": "shop", "state": "valid"}}},
            {"interaction": {"kind": "opened", "within_days": 7}},
        ]
    }
    assert parse_segment(written.to_data()) == written


def test_depth_and_size_are_bounded() -> None:
    parse_segment(nested(MAX_DEPTH))
    assert any("nested deeper than" in p for p in problems(nested(MAX_DEPTH + 1)))
    widest = {"any": [{"all": [PRO] * 49}, {"all": [PRO] * (MAX_CONDITIONS - 52)}]}
    parse_segment(widest)  # exactly MAX_CONDITIONS conditions
    one_more = {"any": [{"all": [PRO] * 49}, {"all": [PRO] * (MAX_CONDITIONS - 51)}]}
    assert problems(one_more) == [f"{MAX_CONDITIONS + 1} conditions: a segment holds at most 100"]
    assert problems({"all": [PRO] * 51}) == [
        "all: List should have at most 50 items after validation, not 51"
    ]
    assert problems("plan=pro") == ["a segment is an object such as {all: [...]}"]
    assert problems({"all": [PRO], "any": [PRO]})[0].startswith("a condition is an object")


def test_values_fit_their_operators() -> None:
    assert problems({"attribute": {"name": "n", "op": "in", "value": "x"}}) == [
        "attribute.value: op 'in' needs a non-empty list as its value"
    ]
    assert problems({"attribute": {"name": "n", "op": "exists", "value": 1}}) == [
        "attribute.value: op 'exists' takes no value"
    ]
    assert problems({"profile": {"field": "locale", "op": "eq", "value": 3}}) == [
        "profile.value: locale is text: compare it with text"
    ]
    assert problems({"run": {"run_id": "r", "journey": "j"}}) == [
        "run: name either run_id or journey"
    ]
    assert problems({"interaction": {"kind": "opened", "within_days": 5000}})[0].startswith(
        "interaction.within_days:"
    )


def test_a_journey_audience_names_a_segment_alone() -> None:
    base = {"id": "j", "name": "J", "app": "shop", "nodes": [{"id": "end", "type": "exit"}]}
    journey = parse_definition(base | {"audience": {"segment": "pro-users"}})
    assert journey.audience is not None
    assert journey.audience.segment == "pro-users"
    assert journey.model_dump(mode="json")["audience"] == {
        "app": None,
        "segment": "pro-users",
        "where": [],
    }
    with pytest.raises(JourneyInvalid) as caught:
        parse_definition(base | {"audience": {"segment": "pro-users", "where": ["plan=pro"]}})
    assert "a segment audience takes no app or where" in str(caught.value)
    # an audience without a segment is stored as before it existed
    plain = parse_definition(base | {"audience": {"where": ["plan=pro"]}})
    assert "segment" not in plain.model_dump(mode="json")["audience"]
