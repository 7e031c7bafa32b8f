"""The designer's per-node report on a real run: a push whose retries ran out is shown as
failed beside the ones delivered, not lost between "sent" and "delivered"."""

from __future__ import annotations

import re

from rich.console import Console

from tests.engine.conftest import SceneFactory, journey, push
from tidings.designer import report
from tidings.sim import Answer, Scenario


async def test_the_report_shows_failed_sends_per_node(scene: SceneFactory) -> None:
    async with scene(delivery_retry_horizon_s=1.0) as s:
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
