"""The interpreter's pure parts: per-profile state, its trip through continue-as-new, and the
decisions of the random split, the condition and the wait_for nodes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from temporalio.contrib.pydantic import pydantic_data_converter

from activities.contracts import ProfileFacts
from tidings.journeys import parse_definition
from tidings.journeys.model import RandomSplitNode, WaitForNode
from tidings.journeys.predicates import AttributePredicate, FactPredicate
from workflows.contracts import CohortInput
from workflows.counts import Counts, Left
from workflows.nodes.condition import holds
from workflows.nodes.random_split import branch_for, draw
from workflows.nodes.wait_for import matched
from workflows.state import CohortState, ProfileState

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_profiles_are_grouped_by_node_unless_busy_or_waiting() -> None:
    state = CohortState(
        profiles={
            "a": ProfileState(node="push"),
            "b": ProfileState(node="push"),
            "c": ProfileState(node="pause", wake_at=NOW + timedelta(seconds=5), armed=True),
            "d": ProfileState(node="wait", wake_at=NOW + timedelta(hours=1), nudged=True),
            "e": ProfileState(node=None),
        }
    )
    assert state.ready_by_node(NOW, busy={"b"}, event_nodes={"wait"}) == {
        "push": ["a"],
        "wait": ["d"],  # an event arrived: its wait_for looks before the timeout
    }
    assert state.next_wake(busy=set()) == NOW + timedelta(seconds=5)
    assert state.positions() == {"push": 2, "pause": 1, "wait": 1}


def test_leaving_is_counted_by_how_and_entering_resets_the_wait() -> None:
    state = CohortState(profiles={"a": ProfileState(node="x", armed=True, nudged=True)})
    state.event_seq = 4
    state.move("a", "y")
    profile = state.profiles["a"]
    assert (profile.node, profile.armed, profile.nudged, profile.entered_seq) == (
        "y",
        False,
        False,
        4,
    )
    state.move("a", None, leaving=Left.GOAL)
    assert state.counts == Counts({"goal": 1})
    assert state.counts.profiles_left(Left.GOAL) == 1


def test_state_survives_continue_as_new_through_the_data_converter() -> None:
    definition = parse_definition(
        {"id": "j", "name": "J", "app": "demo", "nodes": [{"id": "x", "type": "exit"}]}
    )
    state = CohortState(
        profiles={
            "a": ProfileState(
                node="x",
                visits={"p": 2},
                wake_at=NOW,
                interactions={"p": ["opened"]},
                events={"bought": 3},
                targeted={"p": 2},
                delivered={"p": 1},
                goal_reached=True,
                arrived_at=NOW - timedelta(minutes=5),
                sent_visits={"p": 1},
            )
        },
        counts=Counts({"profiles": 1, "push.delivered": 1}),
        seen_events={"e-2", "e-1"},
        event_seq=3,
    )
    carried = CohortInput(
        "run",
        definition,
        ["a"],
        facts={"a": ProfileFacts("Asia/Tokyo", {"plan": "pro"})},
        snapshot=state.snapshot(),
    )
    (payload,) = pydantic_data_converter.payload_converter.to_payloads([carried])
    (back,) = pydantic_data_converter.payload_converter.from_payloads([payload], [CohortInput])
    assert back == carried
    restored = CohortState.restore(back.snapshot)
    assert restored.profiles == state.profiles
    assert restored.seen_events == {"e-1", "e-2"}
    assert restored.counts == state.counts


def split(*percents: float) -> RandomSplitNode:
    return RandomSplitNode.model_validate(
        {"id": "s", "type": "random_split", "branches": [{"percent": p} for p in percents]}
    )


def test_the_random_split_is_per_profile_stable_and_close_to_its_percentages() -> None:
    node = split(20, 30, 50)
    assert draw("j", "s", "ann") == draw("j", "s", "ann")
    assert draw("j", "s", "ann") != draw("other", "s", "ann")
    taken = Counter(branch_for(node, draw("j", "s", f"p{n}")) for n in range(20_000))
    for index, percent in enumerate((20, 30, 50)):
        assert abs(taken[index] / 20_000 * 100 - percent) < 1.5


def test_conditions_read_attributes_and_journey_facts() -> None:
    profile = ProfileState(
        node="c",
        targeted={"hello": 2, "again": 0},
        delivered={"hello": 1},
        interactions={"hello": ["clicked"]},
        events={"bought": 1},
    )
    facts = ProfileFacts(attributes={"plan": "pro"})

    def check(predicate: AttributePredicate | FactPredicate) -> bool:
        return holds(predicate, profile, facts)

    assert check(AttributePredicate(attribute="plan", value="pro"))
    assert check(FactPredicate(fact="had_valid_device"))
    assert not check(FactPredicate(fact="had_valid_device", node="again"))
    assert check(FactPredicate(fact="delivered", node="hello"))
    assert check(FactPredicate(fact="opened", node="hello"))  # a click opened it
    assert check(FactPredicate(fact="clicked", node="hello"))
    assert check(FactPredicate(fact="event", event="bought"))
    assert check(FactPredicate(fact="event", event="left", negate=True))


def test_wait_for_counts_interactions_with_the_push_and_events_after_arrival() -> None:
    on_open = WaitForNode.model_validate(
        {"id": "w", "type": "wait_for", "interaction": "opened", "push": "p", "timeout": "1h"}
    )
    on_event = WaitForNode.model_validate(
        {"id": "w", "type": "wait_for", "event": "bought", "timeout": "1h"}
    )
    waiting = ProfileState(node="w", entered_seq=2, events={"bought": 2})
    assert not matched(on_open, waiting)
    assert not matched(on_event, waiting)  # bought before it arrived here
    waiting.interactions["p"] = ["clicked"]
    waiting.events["bought"] = 3
    assert matched(on_open, waiting)
    assert matched(on_event, waiting)


def test_interactions_count_for_the_latest_send_of_their_node() -> None:
    profile = ProfileState(node="wait", visits={"p": 2}, sent_visits={"p": 1})
    assert profile.is_latest_send("p", 1)
    assert not profile.is_latest_send("p", 0)  # a late open of the first pass
    profile.sent_visits["p"] = 2  # the third send is in flight: it is the latest already
    assert profile.is_latest_send("p", 2)
    assert not profile.is_latest_send("p", 1)
    # a send started before the visit of each send was kept: the last visit counted
    assert ProfileState(node="wait", visits={"p": 2}).is_latest_send("p", 1)
    assert not ProfileState(node="wait").is_latest_send("p", 0)


def test_a_profile_arrives_anew_at_each_node() -> None:
    state = CohortState(profiles={"a": ProfileState(node="push", arrived_at=NOW)})
    state.move("a", "push")  # a loop back to the same push: a new arrival, a new TTL
    assert state.profiles["a"].arrived_at is None
