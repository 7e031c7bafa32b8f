"""Runs, their cohorts and triggered entries are found in Temporal by tidings' search
attributes, with the journey's name in the memo and a static summary."""

from __future__ import annotations

import asyncio
import uuid

from temporalio.client import Client

from tests.scene import PATIENCE_S, SceneFactory, journey, push
from tidings.inbound.triggers import entry_workflow_id
from tidings.runs.start import activate_trigger


async def listed(client: Client, query: str) -> set[str]:
    """Workflow ids the query finds, once Temporal's visibility has caught up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE_S
    while True:
        found = {w.id async for w in client.list_workflows(query)}
        if found or loop.time() > deadline:
            return found
        await asyncio.sleep(0.1)


async def test_runs_and_cohorts_are_listed_by_each_search_attribute(
    scene: SceneFactory,
) -> None:
    async with scene(cohort_size=1) as s:
        await s.profile("ann")
        await s.profile("bob")
        journey_id = f"found-{uuid.uuid4().hex[:6]}"
        definition = journey(push("hi"), id=journey_id, name="Findable welcome")
        started = await s.start_journey(definition, ["ann", "bob"])
        await s.finish(started)
        run_id = started.run_id

        queries = {
            f"TidingsJourney='{journey_id}'",
            f"TidingsJourney='{journey_id}' AND TidingsJourneyVersion=1",
            f"TidingsJourney='{journey_id}' AND TidingsApp='journeys'",
            f"TidingsRun='{run_id}' AND TidingsRunKind='audience'",
        }
        for query in queries:
            found = await listed(s.client, f"{query} AND WorkflowType='JourneyRun'")
            assert found == {run_id}, query
        cohorts = await listed(
            s.client, f"TidingsJourney='{journey_id}' AND WorkflowType='JourneyCohort'"
        )
        assert len(cohorts) == 2  # one profile a cohort, each carrying its run's attributes
        assert all(c.startswith(run_id) for c in cohorts)

        description = await s.client.get_workflow_handle(run_id).describe()
        assert await description.memo_value("journey") == "Findable welcome"
        summary = await description.static_summary()
        assert summary is not None
        assert "Findable welcome" in summary


async def test_a_triggered_entry_is_listed_by_its_profile(scene: SceneFactory) -> None:
    async with scene() as s:
        await s.profile("cat")
        journey_id = f"trig-{uuid.uuid4().hex[:6]}"
        definition = journey(push("hello"), id=journey_id, trigger={"event": "joined"})
        await activate_trigger(s.db, definition)
        assert (await s.event("cat", "joined"))["started"] == [journey_id]
        entry = entry_workflow_id(journey_id, "cat")
        found = await listed(
            s.client,
            f"TidingsProfile='cat' AND TidingsJourney='{journey_id}' "
            "AND TidingsRunKind='triggered'",
        )
        assert found == {entry}
