"""Record the workflow histories the replay tests replay: one run of each journey shape on a
real stack (Temporal's dev server, the simulators, SQLite), saved as JSON under histories/.

    python -m tests.replay.record            # from the repository root
    python -m tests.replay.record b_broadcast a_ttl_quiet_hours     # only these shapes

Record again only on purpose: the committed histories are what the workflows of today must
still replay. A change that breaks them goes behind ``workflow.patched`` instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from temporalio.client import Client, ScheduleActionExecutionStartWorkflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.scene import Scene, journey, journey_scene, push
from tidings.inbound.triggers import entry_workflow_id
from tidings.journeys.model import JourneyDefinition, RandomSplitNode
from tidings.runs.cancel import cancel_run
from tidings.runs.experiments import promote_winner
from tidings.runs.start import StartedRun, activate_trigger
from tidings.sim import Simulators
from tidings.store.migrate import upgrade
from tidings.store.models import Delivery
from tidings.temporal.devserver import temporal_binary
from tidings.worker.resources import engine_options
from workflows.cohort import CohortWorkflow
from workflows.contracts import (
    INTERACTIONS_SIGNAL,
    EngineOptions,
    InteractionBatch,
    InteractionEvent,
)
from workflows.nodes.random_split import branch_for, draw

HISTORIES = Path(__file__).parent / "histories"
# where save() writes: the committed histories, or a test's own directory
RECORD_INTO: ContextVar[Path] = ContextVar("RECORD_INTO", default=HISTORIES)


async def save(client: Client, workflow_id: str, name: str) -> None:
    """Every run of a workflow id (continue-as-new makes several), oldest first."""
    runs = [w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')]
    runs.sort(key=lambda w: w.start_time)
    for index, execution in enumerate(runs):
        history = await client.get_workflow_handle(
            workflow_id, run_id=execution.run_id
        ).fetch_history()
        suffix = f"-{index + 1}" if len(runs) > 1 else ""
        (RECORD_INTO.get() / f"{name}{suffix}.json").write_text(history.to_json())


async def save_run(s: Scene, started: StartedRun, name: str, cohorts: int = 1) -> None:
    await s.finish(started)
    await save(s.client, started.run_id, f"{name}-run")
    for n in range(1, cohorts + 1):
        await save(s.client, f"{started.run_id}/cohort-{n:06d}", f"{name}-cohort-{n}")


async def broadcast(s: Scene) -> None:
    await save_run(s, await s.start_journey(journey(push("hello")), ["a", "b"]), "broadcast")


async def delay_and_signals(s: Scene) -> None:
    started = await s.start_journey(
        journey(
            push("hello", next="pause"),
            {"id": "pause", "type": "delay", "duration": "2s", "next": "done"},
            {"id": "done", "type": "exit"},
        ),
        ["a"],
    )
    row = await s.delivered(started.run_id, "hello", "a")
    event = InteractionEvent("e-1", "a", "opened", datetime.now(UTC), "hello", row.tracking_id)
    for _ in range(2):
        await s.client.get_workflow_handle(row.workflow_id).signal(
            INTERACTIONS_SIGNAL, InteractionBatch([event])
        )
    await save_run(s, started, "delay-signals")


async def wait_for_interaction(s: Scene) -> None:
    started = await s.start_journey(
        journey(
            push("hello", next="wait"),
            {
                "id": "wait",
                "type": "wait_for",
                "interaction": "opened",
                "push": "hello",
                "timeout": "3s",
                "matched": "thanks",
                "timed_out": "reminder",
            },
            push("thanks"),
            push("reminder"),
        ),
        ["a", "b"],
    )
    await s.interact(await s.delivered(started.run_id, "hello", "a"), "opened")
    await save_run(s, started, "wait-for")


async def every_node(s: Scene) -> None:
    async def start(at: datetime) -> StartedRun:
        at = at.astimezone(ZoneInfo("Europe/Paris"))
        return await s.start_journey(
            journey(
                {
                    "id": "morning",
                    "type": "wait_until",
                    "time": at.strftime("%H:%M:%S"),
                    "next": "hi",
                },
                push("hi", next="check", locales={"fr": {"title": "salut", "body": "b"}}),
                {
                    "id": "check",
                    "type": "condition",
                    "predicates": [
                        {"attribute": "plan", "value": "pro"},
                        {"fact": "delivered", "node": "hi"},
                    ],
                    "then": "split",
                    "otherwise": "out",
                },
                {
                    "id": "split",
                    "type": "random_split",
                    "branches": [{"percent": 50, "next": "left"}, {"percent": 50, "next": "out"}],
                },
                push("left"),
                {"id": "out", "type": "exit"},
                timezone="Europe/Paris",
            ),
            ["a", "b", "c"],
        )

    started, _ = await s.start_ahead(timedelta(seconds=2), start)
    await save_run(s, started, "every-node")


async def quiet_hours(s: Scene) -> None:
    async def start(at: datetime) -> StartedRun:
        paris = at.astimezone(ZoneInfo("Europe/Paris"))
        window = {
            "start": (paris - timedelta(hours=1)).strftime("%H:%M:%S"),
            "end": paris.strftime("%H:%M:%S"),
        }
        return await s.start_journey(
            journey(push("hello"), quiet_hours=window, timezone="Europe/Paris"), ["a", "b"]
        )

    started, _ = await s.start_ahead(timedelta(seconds=2), start)
    await save_run(s, started, "quiet-hours")


async def goal_and_event(s: Scene) -> None:
    started = await s.start_journey(
        journey(
            push("hello", next="wait"),
            {
                "id": "wait",
                "type": "wait_for",
                "event": "opened_app",
                "timeout": "3s",
                "matched": "back",
                "timed_out": "back",
            },
            push("back"),
            goal={"event": "purchased"},
        ),
        ["a", "b", "c"],
    )
    await s.delivered(started.run_id, "hello", "a")
    await s.event("a", "purchased")
    await s.event("b", "opened_app")
    await save_run(s, started, "goal-event")


async def triggered(s: Scene) -> None:
    definition = journey(push("welcome"), id="rec-trigger", trigger={"event": "joined"})
    await activate_trigger(s.db, definition)
    await s.event("a", "joined")
    workflow_id = entry_workflow_id(definition.id, "a")
    await s.client.get_workflow_handle(workflow_id).result()
    await save(s.client, workflow_id, "triggered-cohort")


async def c_triggered_local(s: Scene) -> None:
    """A triggered entry whose send runs as a local activity (``local_delivery`` in its
    input)."""
    definition = journey(push("welcome"), id="rec-trigger-local", trigger={"event": "arrived"})
    await activate_trigger(s.db, definition)
    await s.event("b", "arrived")
    workflow_id = entry_workflow_id(definition.id, "b")
    await s.client.get_workflow_handle(workflow_id).result()
    await save(s.client, workflow_id, "c-triggered-local-cohort")


async def continue_as_new(s: Scene) -> None:
    options = dataclasses.replace(engine_options(s.stack.settings), cohort_history_limit=12)
    started = await s.start_journey(
        journey(
            push("one", next="pause"),
            {"id": "pause", "type": "delay", "duration": "1s", "next": "again"},
            {"id": "again", "type": "delay", "duration": "1s", "next": "two"},
            push("two"),
        ),
        ["a", "b"],
        options=options,
    )
    await save_run(s, started, "continue-as-new")


async def cancel(s: Scene) -> None:
    started = await s.start_journey(
        push_pause_push("60s"),
        ["a", "b"],
    )
    await s.delivered(started.run_id, "one", "a")
    await s.delivered(started.run_id, "one", "b")
    await cancel_run(s.client, s.db, started.run_id)
    await save_run(s, started, "cancel")


def push_pause_push(pause: str) -> JourneyDefinition:
    return journey(
        push("one", next="pause"),
        {"id": "pause", "type": "delay", "duration": pause, "next": "two"},
        push("two"),
    )


def continuing_run(s: Scene) -> EngineOptions:
    """Cohorts of one, two at a time, and a run that continues as new as soon as it has
    started them: its cohorts outlive it and report to the next run."""
    return dataclasses.replace(
        engine_options(s.stack.settings), cohort_size=1, cohort_window=2, run_history_limit=16
    )


async def until_continued(s: Scene, workflow_id: str) -> None:
    for _ in range(300):
        if len([w async for w in s.client.list_workflows(f'WorkflowId = "{workflow_id}"')]) > 1:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{workflow_id} never continued as new")


# b-: cohorts report their ends by signal and outlive the run's continue-as-new.
async def b_broadcast(s: Scene) -> None:
    await save_run(s, await s.start_journey(journey(push("hello")), ["a", "b"]), "b-broadcast")


async def b_run_continue_as_new(s: Scene) -> None:
    started = await s.start_journey(
        push_pause_push("2s"),
        ["a", "b", "c"],
        options=continuing_run(s),
    )
    await save_run(s, started, "b-run-continue-as-new", cohorts=3)


async def b_cancel_continued(s: Scene) -> None:
    started = await s.start_journey(
        push_pause_push("60s"),
        ["a", "b", "c"],
        options=continuing_run(s),
    )
    await s.delivered(started.run_id, "one", "a")
    await s.delivered(started.run_id, "one", "b")
    await until_continued(s, started.run_id)
    await cancel_run(s.client, s.db, started.run_id)
    await save_run(s, started, "b-cancel-continued", cohorts=2)


# f-: cohorts report a successful end only when the run asks, before it continues as new;
# the others' ends reach the run as its children's completions.
async def f_broadcast(s: Scene) -> None:
    await save_run(s, await s.start_journey(journey(push("hello")), ["a", "b"]), "f-broadcast")


async def f_run_continue_as_new(s: Scene) -> None:
    started = await s.start_journey(
        push_pause_push("2s"),
        ["a", "b", "c"],
        options=continuing_run(s),
    )
    await save_run(s, started, "f-run-continue-as-new", cohorts=3)


# g-: a cohort whose profiles all wait long says so, and the run starts the next cohort in
# its place; the run continues as new with parked cohorts and keeps them out of its window.
async def g_parked_cohorts(s: Scene) -> None:
    started = await s.start_journey(
        push_pause_push("6s"),
        ["a", "b", "c"],
        options=dataclasses.replace(
            continuing_run(s), cohort_window=1, cohort_parks_after=timedelta(seconds=1)
        ),
    )
    await save_run(s, started, "g-parked-cohorts", cohorts=3)


async def a_ttl_quiet_hours(s: Scene) -> None:
    async def start(at: datetime) -> StartedRun:
        paris = at.astimezone(ZoneInfo("Europe/Paris"))
        window = {
            "start": (paris - timedelta(hours=1)).strftime("%H:%M:%S"),
            "end": paris.strftime("%H:%M:%S"),
        }
        return await s.start_journey(
            journey(
                push("hello", ttl="1s", next="later"), push("later", ttl="0s"), quiet_hours=window
            ),
            ["paris", "tokyo"],
        )

    started, _ = await s.start_ahead(timedelta(seconds=3), start)
    await save_run(s, started, "a-ttl-quiet-hours")


async def a_interaction_visits(s: Scene) -> None:
    started = await s.start_journey(
        journey(
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
            push("thanks"),
        ),
        ["paris"],
    )

    async def nth(visit: int) -> Delivery:
        return await s.delivered(started.run_id, "nudge", "paris", visit=visit)

    first = await nth(0)
    await nth(1)
    await s.interact(first, "opened")
    await s.interact(await nth(2), "opened")
    await save_run(s, started, "a-interaction-visits")


async def d_scheduled(s: Scene) -> None:
    """A schedule's firing: the ScheduledRun workflow, and the run it started."""
    definition = journey(push("hello"))
    saved = await s.stack.http.post("/v1/journeys", json=definition.model_dump(mode="json"))
    assert saved.status_code == 201, saved.text
    body: dict[str, Any] = {"journey_id": definition.id, "kind": "daily", "at": "04:00"}
    body |= {"id": "d-scheduled"}
    body |= {"audience": {"where": ["plan=pro"]}}
    assert (await s.stack.http.post("/v1/schedules", json=body)).status_code == 201
    assert (await s.stack.http.post("/v1/schedules/d-scheduled/trigger")).status_code == 200
    handle = s.client.get_schedule_handle("d-scheduled")
    firing: list[str] = []

    async def fired() -> bool:
        actions = (await handle.describe()).info.recent_actions
        firing[:] = [
            a.action.workflow_id
            for a in actions
            if isinstance(a.action, ScheduleActionExecutionStartWorkflow)
        ]
        return bool(firing)

    await s.until(fired, "the schedule fired")
    run_id = await s.client.get_workflow_handle(firing[0]).result()
    await s.client.get_workflow_handle(run_id).result()
    await save(s.client, firing[0], "d-scheduled-firing")
    await save(s.client, run_id, "d-scheduled-run")
    await save(s.client, f"{run_id}/cohort-000001", "d-scheduled-cohort-1")
    assert (await s.stack.http.delete("/v1/schedules/d-scheduled")).status_code == 204


async def e_experiment(s: Scene) -> None:
    """An experiment split with ``promote: auto`` (the run judges it every second, finding no
    winner), a promotion asked for by hand, passed on to the cohort, and profiles that reach
    the split after it taking the promoted branch."""
    experiment = {
        "goal": {"event": "bought"},
        "window": "1h",
        "min_sample": 1,
        "promote": "auto",
        "check_every": "1s",
    }
    gate = {"id": "gate", "type": "wait_for", "event": "go", "timeout": "20s"}
    split = {
        "id": "split",
        "type": "random_split",
        "branches": [{"percent": 50, "next": "x"}, {"percent": 50, "next": "y"}],
        "experiment": experiment,
    }
    definition = journey(
        gate | {"matched": "split", "timed_out": "split"}, split, push("x"), push("y")
    )
    started = await s.start_journey(definition, ["a", "b", "c"])

    async def entered() -> bool:
        return sum(1 for e in await s.journey_events(started.run_id) if e.kind == "entered") == 3

    await s.until(entered, "the profiles entered")
    await s.event("a", "go")
    node = definition.node("split")
    assert isinstance(node, RandomSplitNode)
    await s.delivered(
        started.run_id, "xy"[branch_for(node, draw(definition.id, "split", "a"))], "a"
    )
    await promote_winner(s.client, s.db, started.run_id, "split", branch=1, by="cli")
    cohort = s.client.get_workflow_handle(f"{started.run_id}/cohort-000001")

    async def told() -> bool:
        return (await cohort.query(CohortWorkflow.progress)).promotions == {"split": 1}

    await s.until(told, "the cohort took the promotion")
    await s.event("b", "go")
    await s.event("c", "go")
    await save_run(s, started, "e-experiment")


async def e_best_hour(s: Scene) -> None:
    """A best_hour wait: its hours chosen by an activity, "a" (the journey's UTC) inside its
    default hour and sent at once, "tokyo" waiting for that hour in Tokyo until the cancel."""

    async def start(hour: int) -> StartedRun:
        return await s.start_journey(
            journey(
                {"id": "best", "type": "best_hour", "default_hour": hour, "next": "hello"},
                push("hello"),
            ),
            ["a", "tokyo"],
        )

    started, _ = await s.start_in_window(
        lambda now: now.hour, start, still_holds=lambda hour, now: now.hour == hour
    )
    await s.delivered(started.run_id, "hello", "a")
    await cancel_run(s.client, s.db, started.run_id)
    await save_run(s, started, "e-best-hour")


SHAPES: list[Callable[[Scene], Awaitable[None]]] = [
    broadcast,
    delay_and_signals,
    wait_for_interaction,
    every_node,
    quiet_hours,
    goal_and_event,
    triggered,
    continue_as_new,
    cancel,
    b_broadcast,
    b_run_continue_as_new,
    b_cancel_continued,
    a_ttl_quiet_hours,
    a_interaction_visits,
    c_triggered_local,
    d_scheduled,
    e_experiment,
    e_best_hour,
    f_broadcast,
    f_run_continue_as_new,
    g_parked_cohorts,
]


async def record(
    shapes: list[Callable[[Scene], Awaitable[None]]],
    into: Path,
    client: Client,
    home: Path,
    **settings: Any,
) -> None:
    """Run ``shapes`` on a real stack (the simulators, SQLite under ``home``, a worker on
    ``client``'s server) and save their histories into ``into``."""
    url = f"sqlite:///{home / 'tidings.db'}"
    upgrade(url)
    token = RECORD_INTO.set(into)
    try:
        async with (
            Simulators(home=home / "sim") as sims,
            # the forwarder looks often: a late open reaches its workflow within the shape
            journey_scene(home, url, client, sims, **settings) as scene,
        ):
            for profile, plan in (("a", "pro"), ("b", "free"), ("c", "pro")):
                await scene.profile(profile, locale="fr", attributes={"plan": plan})
            await scene.profile("paris", timezone="Europe/Paris")
            await scene.profile("tokyo", timezone="Asia/Tokyo")
            for shape in shapes:
                await shape(scene)
    finally:
        RECORD_INTO.reset(token)


async def main(names: list[str]) -> None:
    unknown = set(names) - {shape.__name__ for shape in SHAPES}
    if unknown:
        raise SystemExit(f"no such shapes: {', '.join(sorted(unknown))}")
    shapes = [shape for shape in SHAPES if not names or shape.__name__ in names]
    HISTORIES.mkdir(exist_ok=True)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    os.environ["TEMPORAL_ADDRESS"] = env.client.service_client.config.target_host
    with tempfile.TemporaryDirectory() as tmp:
        await record(shapes, HISTORIES, env.client, Path(tmp))
        print(f"recorded {', '.join(shape.__name__ for shape in shapes)}")
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
