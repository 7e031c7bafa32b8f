"""A run continues as new while its cohorts are still running: the cohorts outlive it, report
their ends to the run's workflow id, and are counted once each; a cancel reaches them by id,
and a cohort that ends without a report (terminated) is counted as failed, once."""

from __future__ import annotations

import dataclasses
from collections import Counter

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from tests.scene import Scene, SceneFactory, journey, push
from tidings.runs.cancel import cancel_run
from tidings.runs.start import StartedRun
from tidings.runs.view import run_view
from tidings.store.models import JourneyRun
from tidings.worker.resources import engine_options
from workflows.contracts import EngineOptions
from workflows.run import JourneyRunWorkflow

# Low enough that the run continues as new as soon as it has started its first cohorts
# (history events: start, a workflow task, the audience page, the child starts).
RUN_HISTORY_LIMIT = 16


def continuing(s: Scene) -> EngineOptions:
    return dataclasses.replace(
        engine_options(s.stack.settings), run_history_limit=RUN_HISTORY_LIMIT
    )


async def histories(s: Scene, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of a workflow id, oldest first."""
    runs = [w async for w in s.client.list_workflows(f'WorkflowId = "{workflow_id}"')]
    runs.sort(key=lambda w: w.start_time)
    return [
        await s.client.get_workflow_handle(workflow_id, run_id=w.run_id).fetch_history()
        for w in runs
    ]


def event_types(history: WorkflowHistory) -> Counter[int]:
    return Counter(event.event_type for event in history.events)


async def continued_as_new(s: Scene, run_id: str) -> bool:
    runs = [w async for w in s.client.list_workflows(f'WorkflowId = "{run_id}"')]
    return len(runs) >= 2


async def stored_run(s: Scene, run_id: str) -> JourneyRun:
    async with s.db.read() as session:
        run: JourneyRun | None = await session.get(JourneyRun, run_id)
    assert run is not None, run_id
    return run


async def waiting_after_continue_as_new(s: Scene, prefix: str) -> StartedRun:
    """Four profiles in two cohorts, each past its first push and waiting in a minute's
    delay, under a run that has continued as new since it started them."""
    profiles = [f"{prefix}{n}" for n in range(4)]
    for profile in profiles:
        await s.profile(profile)
    definition = journey(
        push("one", next="pause"),
        {"id": "pause", "type": "delay", "duration": "60s", "next": "two"},
        push("two"),
    )
    started = await s.start_journey(definition, profiles, options=continuing(s))
    for profile in profiles:
        await s.delivered(started.run_id, "one", profile)

    async def continued() -> bool:
        return await continued_as_new(s, started.run_id)

    await s.until(continued, "the run continued as new")
    return started


async def test_the_run_continues_as_new_while_cohorts_wait_in_a_delay(
    scene: SceneFactory,
) -> None:
    async with scene(cohort_size=2, cohort_window=2) as s:
        profiles = [f"p{n}" for n in range(6)]
        for profile in profiles:
            await s.profile(profile)
        definition = journey(
            push("one", next="pause"),
            {"id": "pause", "type": "delay", "duration": "5s", "next": "two"},
            push("two"),
        )
        started = await s.start_journey(definition, profiles, options=continuing(s))
        for profile in profiles[:4]:
            await s.delivered(started.run_id, "one", profile)

        async def continued() -> bool:
            return await continued_as_new(s, started.run_id)

        await s.until(continued, "the run continued as new")
        # the new run knows the cohorts the old one started, and reads their progress live
        view = await run_view(s.client, s.db, started.run_id)
        assert view.cohorts_running == 2
        assert view.positions == {"pause": 4}
        assert view.counts["push.delivered"] == 4
        result = await s.finish(started)

        runs = await histories(s, started.run_id)
        first = event_types(runs[0])
        # it continued as new with both cohorts running: none had reported to it yet
        assert first[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW] == 1
        assert first[EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED] == 2
        assert first[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED] == 0
        assert first[EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED] == 0
        # each cohort reported once, to whichever run of the workflow was current
        reports = sum(
            event_types(h)[EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED] for h in runs
        )
        assert reports == 3

        assert result.status == "completed"
        assert result.cohorts == 3
        assert result.counts["profiles"] == 6
        assert result.counts["push.delivered"] == 12
        sent = sorted((r.profile_id, r.node_id, r.status) for r in await s.ledger(started.run_id))
        assert sent == sorted((p, n, "delivered") for p in profiles for n in ("one", "two"))
        # no duplicate send reached the provider
        assert len(s.sims.apns.accepted()) == 12
        assert len({r.tracking_id for r in s.sims.apns.accepted()}) == 12
        run = await stored_run(s, started.run_id)
        assert run.status == "completed"
        assert run.summary["push.delivered"] == 12
        assert run.summary["cohorts"] == 3


async def test_a_cancel_reaches_the_cohorts_a_previous_run_started(scene: SceneFactory) -> None:
    async with scene(cohort_size=2, cohort_window=2) as s:
        started = await waiting_after_continue_as_new(s, "q")
        await cancel_run(s.client, s.db, started.run_id)
        result = await s.finish(started)

        assert result.status == "cancelled"
        assert result.counts["push.delivered"] == 4
        assert result.counts["cancelled"] == 4  # all four stopped in the delay
        assert (
            sorted((r.node_id, r.status) for r in await s.ledger(started.run_id))
            == [("one", "delivered")] * 4
        )
        run = await stored_run(s, started.run_id)
        assert run.status == "cancelled"
        assert run.summary["cancelled"] == 4


async def test_a_cohort_terminated_after_the_run_continued_is_counted_once_as_failed(
    scene: SceneFactory,
) -> None:
    async with scene(cohort_size=2, cohort_window=2) as s:
        started = await waiting_after_continue_as_new(s, "t")
        lost = f"{started.run_id}/cohort-000001"
        await s.client.get_workflow_handle(lost).terminate(reason="operator")
        # the run hears nothing from a terminated cohort; the cancel finds it gone
        await cancel_run(s.client, s.db, started.run_id)
        result = await s.finish(started)

        assert result.status == "cancelled"
        # the surviving cohort's counts; the terminated one took its counts with it
        assert result.counts["cancelled"] == 2
        assert result.counts["push.delivered"] == 2
        run = await stored_run(s, started.run_id)
        assert run.error == f"{lost}: ended without a report"
        progress = await started.handle.query(JourneyRunWorkflow.progress)
        assert progress.cohorts_failed == 1
        assert progress.cohorts_finished == 2
        assert progress.running_cohorts == []
