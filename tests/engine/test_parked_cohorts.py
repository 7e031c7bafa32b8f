"""A cohort whose profiles all wait long gives its place in the run's window to the next
cohort: an audience larger than the window reaches its first push without waiting for the
earlier cohorts' delays, across the run's continue-as-new, and each device still gets
exactly one push per push node."""

from __future__ import annotations

import dataclasses
from collections import Counter

from tests.scene import Scene, SceneFactory, journey, push
from tidings.runs.view import run_view
from tidings.worker.resources import engine_options
from workflows.contracts import EngineOptions

PROFILES = [f"w{n}" for n in range(5)]
# far longer than starting five cohorts takes, even on a loaded machine
DELAY = "20s"


def one_at_a_time(s: Scene) -> EngineOptions:
    """Cohorts of one, one taking steps at a time, parked after a second's wait; and a run
    that continues as new as soon as it has started a cohort or two, so the cohorts parked
    under one run of the workflow must stay parked for the next."""
    return dataclasses.replace(
        engine_options(s.stack.settings), cohort_size=1, cohort_window=1, run_history_limit=16
    )


async def test_cohorts_parked_in_a_long_delay_let_the_next_ones_start(
    scene: SceneFactory,
) -> None:
    async with scene(cohort_parks_after_s=1.0) as s:
        tokens = {p: await s.profile(p, devices=("apns", "fcm")) for p in PROFILES}
        definition = journey(
            push("one", next="pause"),
            {"id": "pause", "type": "delay", "duration": DELAY, "next": "two"},
            push("two"),
        )
        started = await s.start_journey(definition, PROFILES, options=one_at_a_time(s))
        for profile in PROFILES:
            await s.delivered(started.run_id, "one", profile)

        async def all_parked() -> bool:
            view = await run_view(s.client, s.db, started.run_id)
            return view.cohorts_running == len(PROFILES) and view.cohorts_waiting == len(PROFILES)

        await s.until(all_parked, "every cohort running and parked in the delay")
        view = await run_view(s.client, s.db, started.run_id)
        assert view.positions == {"pause": len(PROFILES)}
        result = await s.finish(started)

        assert result.status == "completed"
        assert result.cohorts == len(PROFILES)
        assert result.counts["push.delivered"] == 4 * len(PROFILES)
        runs = [w async for w in s.client.list_workflows(f'WorkflowId = "{started.run_id}"')]
        assert len(runs) >= 2, "the run never continued as new while its cohorts waited"
        rows = await s.ledger(started.run_id)
        node_of: dict[str | None, str] = {r.tracking_id: r.node_id for r in rows}
        accepted = sorted(
            s.sims.apns.accepted() + s.sims.fcm.accepted(), key=lambda r: r.received_at
        )
        # every first push reached its devices before any cohort came out of its delay
        order = [node_of[r.tracking_id] for r in accepted]
        assert order == ["one"] * (2 * len(PROFILES)) + ["two"] * (2 * len(PROFILES))
        # each device got exactly one push per push node, as the ledger says
        per_device = Counter((r.token, node_of[r.tracking_id]) for r in accepted)
        assert per_device == Counter(
            {(t, n): 1 for ts in tokens.values() for t in ts for n in ("one", "two")}
        )
        assert sorted((r.profile_id, r.node_id, r.status) for r in rows) == sorted(
            (p, n, "delivered") for p in PROFILES for n in ("one", "two") for _ in range(2)
        )
