"""The designer's per-node report on a real run: a push whose retries ran out is shown as
failed beside the ones delivered, not lost between "sent" and "delivered"; a template that
fails for one profile is that profile's not-sent reason."""

from __future__ import annotations

import re

from rich.console import Console

from tests.engine.conftest import SceneFactory, journey, push
from tidings.designer import report
from tidings.sim import Answer, Scenario


async def test_the_report_shows_failed_sends_per_node(scene: SceneFactory) -> None:
    async with scene(delivery_max_attempts=2) as s:
        (failing,) = await s.profile("unlucky")
        await s.profile("lucky")
        s.sims.apns.set_scenario(
            Scenario(scripted={failing: [Answer(reason="InternalServerError")] * 4})
        )
        started = await s.start(journey(push("hello", next="later"), push("later")), None)
        await s.finish(started)

        console = Console(record=True, width=200)
        funnels = await report(s.db, started.run_id, console)
        text = console.export_text()

    hello, later = funnels
    assert (hello.targeted, hello.sent, hello.delivered, hello.failed) == (2, 2, 1, 1)
    assert re.search(r"targeted\s+┃\s+sent\s+┃\s+delivered\s+┃\s+failed\s+┃\s+opened", text), text
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
        started = await s.start(
            journey(
                push("score", "{{ 100 // (badges | length - 1) }} points", next="label"),
                push("label", "your label: {{ labels['[/red]'] }}"),
            ),
            None,
        )
        await s.finish(started)
        rows = {(r.profile_id, r.node_id): r for r in await s.ledger(started.run_id)}

        console = Console(record=True, width=400)
        funnels = await report(s.db, started.run_id, console)
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
