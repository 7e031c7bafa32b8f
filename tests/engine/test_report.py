"""The designer's per-node report on a real run: a push whose retries ran out is shown as
failed beside the ones delivered, not lost between "sent" and "delivered"; a template that
fails for one profile is that profile's not-sent reason; opened counts clicks as the journey
does."""

from __future__ import annotations

import re

from rich.console import Console

from tests.scene import SceneFactory, journey, push
from tidings.cli.runs import report
from tidings.journeys.model import RandomSplitNode
from tidings.runs.report import run_report
from tidings.sim import Answer, Scenario
from tidings.store.reports import OPENED_RULE, run_funnel
from workflows.nodes.random_split import branch_for, draw


async def test_the_report_shows_failed_sends_per_node(scene: SceneFactory) -> None:
    async with scene(delivery_retry_horizon_s=1.0) as s:
        (failing,) = await s.profile("unlucky")
        await s.profile("lucky")
        s.sims.apns.set_scenario(
            Scenario(scripted={failing: [Answer(reason="InternalServerError")] * 4})
        )
        started = await s.start_journey(journey(push("hello", next="later"), push("later")), None)
        await s.finish(started)

        console = Console(record=True, width=200)
        funnels = (await report(s.db, started.run_id, console)).nodes
        text = console.export_text()

    hello, later = funnels
    assert (hello.targeted, hello.sent, hello.delivered, hello.failed) == (2, 2, 1, 1)
    assert re.search(
        r"targeted\s+┃\s+sent\s+┃\s+delivered\s+┃\s+failed\s+┃\s+unknown\s+┃\s+retried\s+┃\s+opened",
        text,
    ), text
    # node, targeted, sent, delivered, failed
    assert re.search(r"hello\s+│\s+2\s+│\s+2\s+│\s+1\s+│\s+1\s+│", text), text
    assert re.search(r"later\s+│\s+2\s+│\s+2\s+│\s+1\s+│\s+1\s+│", text), text
    assert later.failed == 1


async def test_a_template_failing_for_one_profile_is_that_profile_s_not_sent_reason(
    scene: SceneFactory,
) -> None:
    """A template that raises for one profile (a division by zero, a missing key) gives that
    profile a not-sent row naming the error; the batch goes on for the others, and the
    report prints the reason as it is (brackets in it are not Rich markup)."""
    async with scene(delivery_max_attempts=2) as s:
        await s.profile("ann", attributes={"badges": ["a", "b", "c"], "labels": {"[/red]": "gold"}})
        await s.profile("bob", attributes={"badges": ["a"], "labels": {}})
        started = await s.start_journey(
            journey(
                push("score", "{{ 100 // (badges | length - 1) }} points", next="label"),
                push("label", "your label: {{ labels['[/red]'] }}"),
            ),
            None,
        )
        await s.finish(started)
        rows = {(r.profile_id, r.node_id): r for r in await s.ledger(started.run_id)}

        console = Console(record=True, width=400)
        funnels = (await report(s.db, started.run_id, console)).nodes
        text = console.export_text()

    assert {key: row.status for key, row in rows.items()} == {
        ("ann", "score"): "delivered",
        ("ann", "label"): "delivered",
        ("bob", "score"): "not_sent",
        ("bob", "label"): "not_sent",
    }
    division = (
        "template error: content.body: integer division or modulo by zero (ZeroDivisionError)"
    )
    missing = "template error: content.body: 'dict object' has no attribute '[/red]'"
    assert rows["bob", "score"].reason == division
    assert rows["bob", "label"].reason == missing
    score, label = funnels
    assert (score.sent, score.delivered, score.not_sent) == (1, 1, {division: 1})
    assert (label.sent, label.delivered, label.not_sent) == (1, 1, {missing: 1})
    assert f"{division}: 1" in text
    assert f"{missing}: 1" in text


async def test_opened_counts_a_click_as_the_journey_does(scene: SceneFactory) -> None:
    """A click implies an open: the journey sends a profile that only clicked down its
    "opened" branch, and the report counts that push as opened too, and says so."""
    async with scene() as s:
        for name in ("opens", "clicks", "both", "ignores"):
            await s.profile(name)
        definition = journey(
            push("welcome", next="wait"),
            {
                "id": "wait",
                "type": "wait_for",
                "interaction": "opened",
                "push": "welcome",
                "timeout": "4s",
                "matched": "thanks",
                "timed_out": "reminder",
            },
            push("thanks", "thanks for reading"),
            push("reminder", "you missed this"),
        )
        started = await s.start_journey(definition, ["opens", "clicks", "both", "ignores"])
        await s.interact(await s.delivered(started.run_id, "welcome", "opens"), "opened")
        await s.interact(await s.delivered(started.run_id, "welcome", "clicks"), "clicked")
        both = await s.delivered(started.run_id, "welcome", "both")
        await s.interact(both, "opened")
        await s.interact(both, "clicked")
        result = await s.finish(started)

        console = Console(record=True, width=200)
        funnels = (await report(s.db, started.run_id, console)).nodes
        text = console.export_text()
        async with s.db.read() as session:
            whole = await run_funnel(session, started.run_id)

    by_node = {f.node_id: f for f in funnels}
    assert result.counts["wait.matched"] == 3
    assert by_node["thanks"].targeted == 3
    # the funnel agrees with the branch the journey took
    assert by_node["welcome"].opened == result.counts["wait.matched"]
    assert by_node["welcome"].clicked == 2
    assert (whole.opened, whole.clicked) == (3, 2)
    assert by_node["welcome"].opened_rule == whole.opened_rule == OPENED_RULE
    assert "a click implies an open" in OPENED_RULE
    # node, targeted, sent, delivered, failed, opened, clicked
    # targeted, sent, delivered, failed, unknown, retried, opened, clicked
    assert re.search(
        r"welcome\s+│\s+4\s+│\s+4\s+│\s+4\s+│\s+0\s+│\s+0\s+│\s+0\s+│\s+3\s+│\s+2\s+│", text
    ), text
    assert OPENED_RULE in " ".join(text.split())


async def test_split_branches_report_their_size_and_conversion_to_the_goal(
    scene: SceneFactory,
) -> None:
    """Each random_split branch: how many profiles took it (the run's own counts) and how
    many of them reached the journey's goal."""
    async with scene() as s:
        profiles = [f"shopper-{n}" for n in range(6)]
        for profile in profiles:
            await s.profile(profile)
        definition = journey(
            {
                "id": "split",
                "type": "random_split",
                "branches": [{"percent": 50, "next": "a"}, {"percent": 50, "next": "b"}],
            },
            push("a", next="pause"),
            push("b", next="pause"),
            {"id": "pause", "type": "delay", "duration": "3s"},
            goal={"event": "purchased"},
        )
        split = definition.node("split")
        assert isinstance(split, RandomSplitNode)
        branch_of = {p: branch_for(split, draw(definition.id, "split", p)) for p in profiles}
        started = await s.start_journey(definition, profiles)
        buyer = profiles[0]
        await s.delivered(started.run_id, "ab"[branch_of[buyer]], buyer)
        assert (await s.event(buyer, "purchased"))["signalled"] == 1
        await s.finish(started)
        found = await run_report(s.db, started.run_id)

    [report_of_split] = found.splits
    assert report_of_split.counted_from == "run counts"
    sizes = [b.profiles for b in report_of_split.branches]
    assert sizes == [list(branch_of.values()).count(i) for i in (0, 1)]
    converted = [b.converted for b in report_of_split.branches]
    assert converted == [1 if i == branch_of[buyer] else 0 for i in (0, 1)]
    bought = report_of_split.branches[branch_of[buyer]]
    assert bought.conversion == 1 / bought.profiles
    assert found.goal_reached == 1
