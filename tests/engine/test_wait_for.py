"""wait_for on a real stack: an interaction posted to the API reaches the cohort through the
forwarder and takes one exit; a profile that never interacts takes the other at the
timeout."""

from __future__ import annotations

from tests.engine.conftest import SceneFactory, journey, push


async def test_wait_for_takes_both_exits_on_real_interactions(scene: SceneFactory) -> None:
    async with scene() as s:
        await s.profile("opens")
        await s.profile("ignores")
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
        started = await s.start(definition, ["opens", "ignores"])
        welcome = await s.delivered(started.run_id, "welcome", "opens")
        await s.interact(welcome, "opened")
        result = await s.finish(started)

        sent = {(r.profile_id, r.node_id) for r in await s.ledger(started.run_id)}
        assert sent == {
            ("opens", "welcome"),
            ("opens", "thanks"),
            ("ignores", "welcome"),
            ("ignores", "reminder"),
        }
        assert result.counts["wait.matched"] == 1
        assert result.counts["wait.timed_out"] == 1
        assert result.counts["interaction.opened"] == 1
