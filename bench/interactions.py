"""Interactions posted to the API while journeys wait for them, and what they cost Temporal.

    python bench/interactions.py [--profiles 4000] [--rate 500] [--batch 1] [--click-share 0.3]
                                 [--store postgres]

A push -> delay journey sends one push to every device of N profiles; while every profile
stands on the delay, the benchmark posts an open for every push (and a click for a share of
them) to ``tidings api`` (its own process) at a steady offered rate, then waits until the
worker's forwarder has signalled every one to its cohort, and checks each was applied once.

The last line of output is one JSON object:
  interactions_per_s              interactions the API accepted (202) per second, first post
                                  to last answer, at the offered rate
  offered_per_s                   the rate the benchmark posted at
  history_events_per_interaction  Temporal history events the interactions added (run and
                                  cohort histories, counted exactly) per interaction
  forward_lag_s                   last answer to last interaction signalled
  reports_per_request             1: one report per request; more: /v1/interactions/batch
  api_p50_ms / api_p99_ms         API answer times (per request)
  interactions, applied           posted; counted by the cohorts (equal when applied once)
  cpu_us_per_interaction          CPU microseconds per interaction by process, first post to
                                  the last one signalled
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from typing import Any

from common import (
    APP_ID,
    ApiProcess,
    BenchStack,
    WorkerProcess,
    add_store_arguments,
    bench_database,
    bench_home,
    bench_stack,
    cpu_seconds,
    cpu_us_per_unit,
    emit,
    log,
    seed,
    workflow_history_events,
)
from loadgen import post_open_loop
from sqlalchemy import func
from sqlmodel import col, select

from tidings.journeys import parse_definition
from tidings.runs.start import StartedRun, start_run
from tidings.store.db import Database
from tidings.store.models import Delivery, DeliveryStatus, Interaction

JOURNEY = {
    "id": "remind",
    "name": "Remind",
    "app": APP_ID,
    "nodes": [
        {"id": "hello", "type": "push", "content": {"body": "Something new"}, "next": "wait"},
        {"id": "wait", "type": "delay", "duration": "2h", "next": "done"},
        {"id": "done", "type": "exit"},
    ],
}


async def sent_pushes(db: Database, run: StartedRun, expected: int) -> list[Delivery]:
    """Wait until the journey has sent every push; the ledger rows of the run."""
    rows: list[Delivery] = []
    for _ in range(6000):
        async with db.read() as session:
            done = (
                await session.exec(
                    select(func.count())
                    .select_from(Delivery)
                    .where(col(Delivery.run_id) == run.run_id)
                    .where(col(Delivery.status) != DeliveryStatus.PENDING.value)
                )
            ).one()
            if done >= expected:
                rows = list(
                    (
                        await session.exec(
                            select(Delivery)
                            .where(col(Delivery.run_id) == run.run_id)
                            .where(col(Delivery.status) == DeliveryStatus.DELIVERED.value)
                        )
                    ).all()
                )
                return rows
        await asyncio.sleep(0.2)
    raise RuntimeError("the journey did not send its pushes in time")


async def post_at_rate(
    api: ApiProcess, reports: list[dict[str, str]], rate: float, batch: int
) -> tuple[float, int, list[float]]:
    """Post every report at ``rate`` reports per second, one per request (``batch`` 1, as
    apps report) or ``batch`` per request to /v1/interactions/batch (as a backend relaying
    many devices' events would). Open loop (bench/loadgen.py): a slow answer does not delay
    the next post. Returns (elapsed, accepted, request latencies)."""
    bodies: list[Any]
    if batch == 1:
        path, bodies = "/v1/interactions", list(reports)
    else:
        path = "/v1/interactions/batch"
        bodies = [{"items": reports[i : i + batch]} for i in range(0, len(reports), batch)]
    result = await post_open_loop(
        api.url,
        path,
        bodies,
        rate / batch,
        headers={"Authorization": f"Bearer {api.ADMIN_KEY}"},
    )
    for failure in result.failures:
        log(f"a connection broke: {failure}")
    accepted = 0
    for answer in result.answers:
        if answer.status != 202:
            log(f"answer {answer.status}: {answer.body[:200]!r}")
        elif batch == 1:
            accepted += 1
        else:
            items = json.loads(answer.body)["items"]
            accepted += sum(1 for i in items if i["outcome"] == "accepted")
    return result.elapsed_s, accepted, [a.latency_s for a in result.answers]


async def drained(db: Database) -> float:
    """Wait until the forwarder has handled every matched interaction; when that happened."""
    for _ in range(12000):
        async with db.read() as session:
            left = (
                await session.exec(
                    select(func.count())
                    .select_from(Interaction)
                    .where(col(Interaction.status) == "matched")
                    .where(col(Interaction.forwarded_at).is_(None))
                )
            ).one()
        if left == 0:
            return time.perf_counter()
        await asyncio.sleep(0.05)
    raise RuntimeError("the forwarder did not drain the outbox in time")


async def applied(stack: BenchStack, cohorts: list[str]) -> int:
    total = 0
    for workflow_id in cohorts:
        counts = await stack.client.get_workflow_handle(workflow_id).query("counts")
        total += sum(v for k, v in counts.items() if k.startswith("interaction."))
    return int(total)


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(5)
    with bench_home(args.home) as home, bench_database(args.store, args.postgres) as url:
        async with bench_stack(home, url) as stack:
            devices = await seed(stack, args.profiles)
            log(f"seeded {args.profiles} profiles, {len(devices)} devices")
            db = Database(stack.settings.resolved_database_url)
            try:
                async with WorkerProcess(stack.env, home), ApiProcess(stack.env, home) as api:
                    run = await start_run(
                        stack.client, db, stack.settings, parse_definition(JOURNEY)
                    )
                    pushes = await sent_pushes(db, run, len(devices))
                    cohorts = sorted({row.workflow_id for row in pushes})
                    log(f"run {run.run_id}: {len(pushes)} pushes delivered, {len(cohorts)} cohorts")
                    workflows = [run.run_id, *cohorts]
                    events_before = await workflow_history_events(stack.client, workflows)

                    reports = [{"tracking_id": r.tracking_id, "kind": "opened"} for r in pushes]
                    reports += [
                        {"tracking_id": r.tracking_id, "kind": "clicked", "action_id": "open"}
                        for r in pushes
                        if rng.random() < args.click_share
                    ]
                    rng.shuffle(reports)
                    cpu_before = cpu_seconds()
                    elapsed, accepted, latencies = await post_at_rate(
                        api, reports, args.rate, args.batch
                    )
                    last_answer = time.perf_counter()
                    log(
                        f"posted {len(reports)} interactions in {elapsed:.1f}s, {accepted} accepted"
                    )
                    drained_at = await drained(db)
                    cpu_after = cpu_seconds()
                    counted = await applied(stack, cohorts)
                    events_after = await workflow_history_events(stack.client, workflows)
                    await run.handle.terminate("benchmark over")
            finally:
                await db.dispose()
            quantiles = statistics.quantiles(latencies, n=100)
            emit(
                {
                    "profiles": args.profiles,
                    "pushes": len(pushes),
                    "cohorts": len(cohorts),
                    "offered_per_s": args.rate,
                    "reports_per_request": args.batch,
                    "interactions": len(reports),
                    "interactions_per_s": round(accepted / elapsed, 1),
                    "history_events_per_interaction": round(
                        (events_after - events_before) / max(1, len(reports)), 4
                    ),
                    "forward_lag_s": round(max(0.0, drained_at - last_answer), 2),
                    "api_p50_ms": round(quantiles[49] * 1000, 1),
                    "api_p99_ms": round(quantiles[98] * 1000, 1),
                    "applied": counted,
                    "cpu_us_per_interaction": cpu_us_per_unit(cpu_before, cpu_after, len(reports)),
                    "load_average": [round(x, 1) for x in os.getloadavg()],
                }
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=500.0, help="interactions posted per second")
    parser.add_argument("--click-share", type=float, default=0.3)
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        choices=range(1, 101),
        metavar="1..100",
        help="reports per request: 1 posts to /v1/interactions, more to /v1/interactions/batch",
    )
    parser.add_argument("--home", help="directory for the run's state (default: a temporary one)")
    add_store_arguments(parser)
    asyncio.run(main(parser.parse_args()))
