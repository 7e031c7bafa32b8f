"""wait_for on a real stack: an interaction posted to the API reaches the cohort through the
forwarder and takes one exit; a profile that never interacts takes the other at the
timeout. A clicked wait takes a click only; an interaction counts for the send it is about."""

from __future__ import annotations

from tests.scene import SceneFactory, journey, push
from tidings.store.models import Delivery


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
        started = await s.start_journey(definition, ["opens", "ignores"])
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


async def test_a_clicked_wait_for_is_taken_by_a_real_click_not_by_an_open(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        await s.profile("clicks")
        await s.profile("opens")
        definition = journey(
            push("offer", next="wait"),
            {
                "id": "wait",
                "type": "wait_for",
                "interaction": "clicked",
                "push": "offer",
                "timeout": "4s",
                "matched": "thanks",
                "timed_out": "reminder",
            },
            push("thanks", "thanks for the click"),
            push("reminder", "the offer still stands"),
        )
        started = await s.start_journey(definition, ["clicks", "opens"])
        await s.interact(await s.delivered(started.run_id, "offer", "clicks"), "clicked")
        # an open is not a click
        await s.interact(await s.delivered(started.run_id, "offer", "opens"), "opened")
        result = await s.finish(started)

        sent = {(r.profile_id, r.node_id) for r in await s.ledger(started.run_id)}
        assert sent == {
            ("clicks", "offer"),
            ("clicks", "thanks"),
            ("opens", "offer"),
            ("opens", "reminder"),
        }
        assert (result.counts["wait.matched"], result.counts["wait.timed_out"]) == (1, 1)
        assert result.counts["interaction.clicked"] == 1
        assert result.counts["interaction.opened"] == 1


async def test_a_late_open_of_an_earlier_send_is_not_taken_for_the_latest(
    scene: SceneFactory,
) -> None:
    """A loop passes the same push twice: the first send's open, reported late, reaches the
    journey while it waits on the second send, and is not taken for the second's."""
    async with scene() as s:
        await s.profile("ann")
        definition = journey(
            push("nudge", next="wait"),
            {
                "id": "wait",
                "type": "wait_for",
                "interaction": "opened",
                "push": "nudge",
                "timeout": "3s",
                "matched": "thanks",
                "timed_out": "pause",
            },
            {"id": "pause", "type": "delay", "duration": "1s", "next": "nudge"},
            push("thanks", "thanks for reading"),
        )
        started = await s.start_journey(definition, ["ann"])

        async def nth_send(visit: int) -> Delivery:
            return await s.delivered(started.run_id, "nudge", "ann", visit=visit)

        first = await nth_send(0)
        await nth_send(1)
        await s.interact(first, "opened")  # late: the journey waits on the second nudge
        third = await nth_send(2)
        await s.interact(third, "opened")
        result = await s.finish(started)

        sent = [(r.node_id, r.visit) for r in await s.ledger(started.run_id)]
        assert sent == [("nudge", 0), ("nudge", 1), ("nudge", 2), ("thanks", 0)]
        assert (result.counts["wait.timed_out"], result.counts["wait.matched"]) == (2, 1)
        assert result.counts["interaction.opened"] == 2
