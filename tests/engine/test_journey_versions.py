"""Journey versioning end to end (DESIGN.md decision 7): editing a stored journey stores a
new version, and a run in flight keeps the snapshot it started with."""

from __future__ import annotations

import uuid
from typing import Any

from tests.scene import Scene, SceneFactory, journey, push
from tidings.journeys.model import JourneyDefinition
from tidings.runs.start import load_stored, save_journey
from tidings.store.models import JourneyRun


def welcome(journey_id: str, farewell: str, pause: str) -> JourneyDefinition:
    return journey(
        push("hello", next="pause"),
        {"id": "pause", "type": "delay", "duration": pause, "next": "bye"},
        push("bye", farewell),
        id=journey_id,
    )


async def body_sent(s: Scene, run_id: str, node_id: str) -> Any:
    row = await s.delivered(run_id, node_id, "ann")
    (record,) = s.sims.apns.accepted(tracking_id=row.tracking_id)
    assert record.payload is not None
    return record.payload["aps"]["alert"]["body"]


async def run_row(s: Scene, run_id: str) -> JourneyRun:
    async with s.db.read() as session:
        run: JourneyRun | None = await session.get(JourneyRun, run_id)
    assert run is not None
    return run


async def test_an_edit_stores_version_2_and_a_run_in_flight_keeps_its_snapshot(
    scene: SceneFactory,
) -> None:
    async with scene() as s:
        await s.profile("ann")
        journey_id = f"versions-{uuid.uuid4().hex[:6]}"
        first = welcome(journey_id, "from version 1", "3s")
        assert await save_journey(s.db, first) == 1
        assert await save_journey(s.db, first) == 1  # unchanged: no new version

        in_flight = await s.start_journey(await load_stored(s.db, journey_id), ["ann"])
        await s.delivered(in_flight.run_id, "hello", "ann")
        # edited while the run waits in its delay
        second = welcome(journey_id, "from version 2", "1s")
        assert await save_journey(s.db, second) == 2
        assert await load_stored(s.db, journey_id) == second
        assert await load_stored(s.db, journey_id, version=1) == first

        result = await s.finish(in_flight)
        assert result.counts["push.delivered"] == 2
        assert await body_sent(s, in_flight.run_id, "bye") == "from version 1"
        run = await run_row(s, in_flight.run_id)
        assert run.journey_version == 1
        assert run.definition == first.model_dump(mode="json")

        # a run started now takes the newest version
        later = await s.start_journey(await load_stored(s.db, journey_id), ["ann"])
        await s.finish(later)
        assert await body_sent(s, later.run_id, "bye") == "from version 2"
        assert (await run_row(s, later.run_id)).journey_version == 2
