"""An experiment on a random split: what it takes, and every mistake named by node and
field."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tidings.journeys import JourneyInvalid, parse_definition
from tidings.journeys.model import RandomSplitNode


def push(node_id: str, **fields: object) -> dict[str, object]:
    return {"id": node_id, "type": "push", "content": {"title": "t", "body": "b"}, **fields}


def journey_with(experiment: Any, *, before: list[dict[str, object]] | None = None) -> Any:
    split = {
        "id": "split",
        "type": "random_split",
        "branches": [{"percent": 50, "next": "a"}, {"percent": 50, "next": "b"}],
        "experiment": experiment,
    }
    nodes = [*(before or []), split, push("a"), push("b")]
    return {"id": "j", "name": "J", "app": "demo", "nodes": nodes}


def issues(data: Any) -> list[str]:
    with pytest.raises(JourneyInvalid) as caught:
        parse_definition(data)
    return [str(issue) for issue in caught.value.issues]


def test_an_experiment_reads_as_designers_write_it() -> None:
    definition = parse_definition(
        journey_with(
            {"goal": {"interaction": "opened", "node": "a"}, "window": "2d", "confidence": 0.9}
        )
    )
    split = definition.node("split")
    assert isinstance(split, RandomSplitNode)
    assert split.experiment is not None
    assert split.experiment.window == timedelta(days=2)
    assert (split.experiment.confidence, split.experiment.min_sample) == (0.9, 100)
    assert split.experiment.promote == "manual"
    by_event = parse_definition(
        journey_with({"goal": {"event": "purchase"}, "window": "1h", "promote": "auto"})
    ).node("split")
    assert isinstance(by_event, RandomSplitNode)
    assert by_event.experiment is not None
    assert by_event.experiment.goal.event == "purchase"


def test_a_split_without_an_experiment_is_stored_as_before() -> None:
    data = journey_with(None)
    del data["nodes"][0]["experiment"]
    stored = parse_definition(data).model_dump(mode="json")
    assert "experiment" not in stored["nodes"][0]


@pytest.mark.parametrize(
    ("goal", "field", "says"),
    [
        ({}, "experiment.goal", "is missing: count an interaction"),
        (
            {"interaction": "opened", "event": "purchase"},
            "experiment.goal",
            "an interaction or a custom event, not both",
        ),
        ({"interaction": "opened", "node": "nowhere"}, "experiment.goal.node", "no node"),
        ({"interaction": "opened", "node": "split"}, "experiment.goal.node", "random_split"),
        ({"interaction": "clicked", "node": "first"}, "experiment.goal.node", "after this"),
    ],
)
def test_a_goal_that_cannot_be_counted_is_named(
    goal: dict[str, str], field: str, says: str
) -> None:
    data = journey_with({"goal": goal, "window": "1d"}, before=[push("first", next="split")])
    found = issues(data)
    assert any(f"node 'split', {field}:" in issue and says in issue for issue in found), found


def test_an_interaction_goal_needs_a_push_after_the_split() -> None:
    data = journey_with({"goal": {"interaction": "opened"}, "window": "1d"})
    data["nodes"][1] = {"id": "a", "type": "delay", "duration": "1s"}
    data["nodes"][2] = {"id": "b", "type": "exit"}
    assert "no push comes after this split" in " ".join(issues(data))


@pytest.mark.parametrize(
    ("settings", "field", "says"),
    [
        ({"window": "0s"}, "experiment.window", "longer than 0s"),
        ({"window": "91d"}, "experiment.window", "at most 90 days"),
        ({"window": "1d", "check_every": "0s"}, "experiment.check_every", "at least 1s"),
        ({"window": "1d", "confidence": 1.5}, "experiment.confidence", "less than or equal"),
        ({"window": "1d", "confidence": 0.5}, "experiment.confidence", "greater than or equal"),
        ({"window": "1d", "min_sample": 0}, "experiment.min_sample", "greater than or equal"),
        ({"window": "1d", "promote": "always"}, "experiment.promote", "'manual' or 'auto'"),
        ({"window": "soon"}, "experiment.window", "is not a duration"),
        ({}, "experiment.window", "Field required"),
        ({"window": "1d", "winner": 1}, "experiment.winner", "Extra inputs"),
    ],
)
def test_bad_settings_are_named(settings: dict[str, object], field: str, says: str) -> None:
    found = issues(journey_with({"goal": {"event": "purchase"}} | settings))
    assert any(f"node 'split', {field}:" in issue and says in issue for issue in found), found


def test_automatic_promotion_is_refused_for_a_triggered_journey() -> None:
    data = journey_with({"goal": {"event": "purchase"}, "window": "1d", "promote": "auto"})
    data["trigger"] = {"event": "signed_up"}
    assert any(
        "node 'split', experiment.promote: auto needs a run over an audience" in issue
        for issue in issues(data)
    )
    data["nodes"][0]["experiment"]["promote"] = "manual"
    assert parse_definition(data).trigger is not None
