"""Broadcast one push node to N profiles on the embedded stack, and measure it.

    python bench/broadcast.py --profiles 5000 [--cohort-size 500] [--store postgres]

The last line of output is one JSON object:
  deliveries_per_s         deliveries per second through tidings (run start to run end)
  ceiling_per_s            the same senders sending the same device list straight to the same
                           simulators, no Temporal and no store, measured in the same run
  ratio                    deliveries_per_s / ceiling_per_s
  history_events_per_push  Temporal history events (run + cohorts) per delivered push
  pushes                   pushes the simulators accepted during the journey
  devices_missing          seeded devices the simulators accepted no push for
  pushes_beyond_one        pushes accepted beyond one per device
  cpu_us_per_push          CPU microseconds per delivered push, by process (bench, worker,
                           temporal, simulators), from run start to run end
  ceiling_cpu_us_per_push  CPU microseconds per push of the senders alone (the ceiling's)
  worker_peak_rss_mb       peak resident memory of the worker process
  temporal_rss_mb          the Temporal dev server's resident memory at the run's end
  temporal_db_mb           its SQLite database's size; store_mb: tidings' store's size
  seeding_profiles_per_s   profiles (with their devices) written per second before the run

--store postgres runs it on a fresh database of a local PostgreSQL server (--postgres).
The ceiling is measured on the first --ceiling-sample devices (50,000): a steady rate.
  cohort_history           the largest of the first cohorts' histories (up to 20, all of
                           their runs): events, bytes, and its largest event's bytes
                           (Temporal warns at 10,240 events or 10 MB a history, and refuses
                           a payload over 2 MB)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from common import (
    APP_ID,
    REPO,
    BenchStack,
    SeededDevice,
    WorkerProcess,
    add_store_arguments,
    bench_database,
    bench_home,
    bench_stack,
    cpu_seconds,
    cpu_us_per_unit,
    emit,
    export_tree,
    history_events,
    log,
    rss_mb,
    seed,
    store_size_mb,
)
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from tidings.journeys import parse_definition
from tidings.push import PushMessage, SenderRegistry, SendItem
from tidings.push.outcome import Outcome
from tidings.runs.start import start_run
from tidings.store.db import Database
from tidings.store.ledger import tracking_id_for
from tidings.temporal.devserver import free_port
from tidings.worker.resources import provider_routes
from workflows.counts import Counts

JOURNEY = {
    "id": "broadcast",
    "name": "Broadcast",
    "app": APP_ID,
    "nodes": [
        {
            "id": "announce",
            "type": "push",
            "content": {"title": "Hello {{ first_name }}", "body": "Something new is here."},
        }
    ],
}


COHORTS_SIZED = 20


async def largest_history(stack: BenchStack, run_id: str, cohorts: int) -> dict[str, int]:
    """The largest history among the run's first cohorts (every run of each workflow id):
    events, bytes, and the largest single event, against Temporal's limits."""
    largest = {"events": 0, "bytes": 0, "largest_event_bytes": 0}
    for n in range(1, min(cohorts, COHORTS_SIZED) + 1):
        workflow_id = f"{run_id}/cohort-{n:06d}"
        async for execution in stack.client.list_workflows(f'WorkflowId = "{workflow_id}"'):
            history = await stack.client.get_workflow_handle(
                workflow_id, run_id=execution.run_id
            ).fetch_history()
            sizes = [event.ByteSize() for event in history.events]
            largest["events"] = max(largest["events"], len(sizes))
            largest["bytes"] = max(largest["bytes"], sum(sizes))
            largest["largest_event_bytes"] = max(largest["largest_event_bytes"], *sizes)
    return largest


async def run_journey(stack: BenchStack) -> tuple[float, int, dict[str, int], dict[str, int]]:
    db = Database(stack.settings.resolved_database_url)
    try:
        started_at = time.perf_counter()
        started = await start_run(stack.client, db, stack.settings, parse_definition(JOURNEY))
        result = await started.handle.result()
        elapsed = time.perf_counter() - started_at
    finally:
        await db.dispose()
    events, executions = 0, 0
    expected = result.cohorts + 1
    for _ in range(100):  # visibility lags the histories a little
        events, executions = await history_events(stack.client, started.run_id)
        if executions >= expected:
            break
        await asyncio.sleep(0.2)
    log(f"run {started.run_id}: {result.cohorts} cohorts, {executions} executions, {events} events")
    return (
        elapsed,
        events,
        result.counts,
        await largest_history(stack, started.run_id, result.cohorts),
    )


async def measure_ceiling(stack: BenchStack, devices: list[SeededDevice]) -> tuple[float, int]:
    registry = SenderRegistry(
        provider_routes(stack.settings),
        max_in_flight=stack.settings.send_concurrency,
        timeout_s=stack.settings.send_timeout_s,
    )

    async def credentials() -> object:
        return stack.credentials

    try:
        senders = await registry.get(APP_ID, 1, credentials)  # type: ignore[arg-type]
        message = PushMessage(title="Hello", body="Something new is here.")
        by_provider = {
            "apns": [d for d in devices if d.provider == "apns"],
            "fcm": [d for d in devices if d.provider == "fcm"],
        }

        async def send(provider: str) -> int:
            sender = senders.apns if provider == "apns" else senders.fcm
            assert sender is not None
            items = [
                SendItem(d.token, tracking_id_for(f"ceiling:{d.token}"), message)
                for d in by_provider[provider]
            ]
            results = await sender.send_batch(items)
            return sum(1 for r in results if r.outcome is Outcome.DELIVERED)

        started_at = time.perf_counter()
        delivered = sum(await asyncio.gather(send("apns"), send("fcm")))
        return time.perf_counter() - started_at, delivered
    finally:
        await registry.close()


async def polling(stack: BenchStack, worker: WorkerProcess) -> None:
    """Until the worker process polls the task queue."""
    request = DescribeTaskQueueRequest(
        namespace=stack.client.namespace,
        task_queue=TaskQueue(name=stack.settings.task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    identity = f"{worker.process.pid}@"
    for _ in range(600):
        described = await stack.client.workflow_service.describe_task_queue(request)
        if any(p.identity.startswith(identity) for p in described.pollers):
            return
        assert worker.process.poll() is None, "the worker stopped"
        await asyncio.sleep(0.05)
    raise RuntimeError("the worker never polled its task queue")


async def compare(args: argparse.Namespace) -> None:
    """The same broadcast, alternately by a worker of ``--baseline`` and one of this tree
    (metrics served and sampled, tracing off as by default), in one stack, side by side."""
    with bench_home(args.home) as home:
        baseline = export_tree(args.baseline, home / "baseline")
        async with bench_stack(home) as stack:
            devices = await seed(stack, args.profiles)
            log(f"seeded {args.profiles} profiles, {len(devices)} devices")
            observed_env = stack.env | {
                "TIDINGS_WORKER_METRICS_ADDRESS": "127.0.0.1:0",
                "TIDINGS_TEMPORAL_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
            }
            rates: dict[str, list[float]] = {"baseline": [], "this": []}
            # round 0 warms each tree up (its bytecode cache, the simulators' connections)
            # and is not counted; each worker polls before its broadcast starts, so its
            # start-up is no part of the figure
            workers = [("baseline", baseline, stack.env), ("this", REPO, observed_env)]
            for round_no in range(args.rounds + 1):
                # which goes first alternates: the store grows with every broadcast
                for name, tree, env in workers if round_no % 2 else workers[::-1]:
                    async with WorkerProcess(env, home, tree) as worker:
                        await polling(stack, worker)
                        elapsed, _, counts, _ = await run_journey(stack)
                    delivered = Counts.of(counts).push("delivered")
                    rate = round(delivered / elapsed, 1)
                    log(f"round {round_no} {name}: {rate} deliveries/s")
                    if round_no:
                        rates[name].append(rate)
            ratios = [t / b for t, b in zip(rates["this"], rates["baseline"], strict=True)]
            emit(
                {
                    "profiles": args.profiles,
                    "devices": len(devices),
                    "baseline": args.baseline,
                    "baseline_deliveries_per_s": rates["baseline"],
                    "this_deliveries_per_s": rates["this"],
                    # this tree's cost, from the median of the rounds' paired ratios
                    "overhead": round(1 - statistics.median(ratios), 3),
                }
            )


async def exactly_once(stack: BenchStack, devices: list[SeededDevice]) -> dict[str, int]:
    """What each seeded device received, counted at the simulators: the devices that got no
    push, and the pushes accepted beyond one per device."""
    accepted: dict[str, int] = {}
    for provider in ("apns", "fcm"):
        summary = await stack.sims.summary(provider)
        accepted.update({token: s.accepted for token, s in summary.tokens.items()})
    missing = sum(1 for d in devices if accepted.get(d.token, 0) == 0)
    extra = sum(max(0, count - 1) for count in accepted.values())
    return {"devices_missing": missing, "pushes_beyond_one": extra}


async def main(args: argparse.Namespace) -> None:
    if args.baseline:
        await compare(args)
        return
    with bench_home(args.home) as home, bench_database(args.store, args.postgres) as url:
        overrides = {"cohort_size": args.cohort_size} if args.cohort_size else {}
        async with bench_stack(home, url, **overrides) as stack:
            seeding_started = time.perf_counter()
            devices = await seed(stack, args.profiles)
            seeding_s = time.perf_counter() - seeding_started
            log(f"seeded {args.profiles} profiles, {len(devices)} devices in {seeding_s:.1f} s")
            async with WorkerProcess(stack.env, home) as worker:
                await polling(stack, worker)
                cpu_before = cpu_seconds()
                elapsed, events, counts, cohort_history = await run_journey(stack)
                cpu_after = cpu_seconds()
                temporal_rss_mb = rss_mb("temporal")
            received = await exactly_once(stack, devices)
            accepted = await stack.sims.stats()
            pushes = accepted["apns"]["accepted"] + accepted["fcm"]["accepted"]
            delivered = Counts.of(counts).push("delivered")
            # the transport ceiling is a steady rate: a sample of the devices measures it
            sample = devices if args.ceiling_sample <= 0 else devices[: args.ceiling_sample]
            ceiling_cpu_before = cpu_seconds()
            ceiling_elapsed, ceiling_delivered = await measure_ceiling(stack, sample)
            ceiling_cpu = cpu_us_per_unit(ceiling_cpu_before, cpu_seconds(), ceiling_delivered)
            deliveries_per_s = delivered / elapsed
            ceiling_per_s = ceiling_delivered / ceiling_elapsed
            emit(
                {
                    "store": args.store,
                    "profiles": args.profiles,
                    "devices": len(devices),
                    "cohort_size": stack.settings.cohort_size,
                    "seeding_profiles_per_s": round(args.profiles / seeding_s, 1),
                    "deliveries_per_s": round(deliveries_per_s, 1),
                    "ceiling_per_s": round(ceiling_per_s, 1),
                    "ceiling_devices": len(sample),
                    "ratio": round(deliveries_per_s / ceiling_per_s, 3),
                    "history_events_per_push": round(events / max(1, delivered), 4),
                    "pushes": pushes,
                    **received,
                    "cpu_us_per_push": cpu_us_per_unit(cpu_before, cpu_after, delivered),
                    # the senders alone (in this process), for the worker's figure above
                    "ceiling_cpu_us_per_push": ceiling_cpu["bench"],
                    "worker_peak_rss_mb": worker.peak_rss_mb,
                    "temporal_rss_mb": temporal_rss_mb,
                    "temporal_db_mb": round(
                        (home / "temporal" / "temporal.db").stat().st_size / 2**20, 1
                    ),
                    "store_mb": await store_size_mb(stack.settings.resolved_database_url),
                    "cohort_history": cohort_history,
                }
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=5000)
    parser.add_argument("--cohort-size", type=int, default=None)
    parser.add_argument("--home", help="directory for the run's state (default: a temporary one)")
    parser.add_argument(
        "--baseline",
        help="a git ref (main): broadcast alternately with its worker and this tree's, "
        "side by side in one stack, and report this tree's overhead",
    )
    parser.add_argument("--rounds", type=int, default=2, help="with --baseline: runs of each")
    add_store_arguments(parser)
    parser.add_argument(
        "--ceiling-sample",
        type=int,
        default=50_000,
        help="devices the transport ceiling is measured on (0: all of them)",
    )
    asyncio.run(main(parser.parse_args()))
