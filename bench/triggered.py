"""Triggered journeys: custom events posted to the API at a steady rate, each starting a
one-push journey for its profile, and the time from the POST to the simulator accepting the
push. The API stores each event and answers; the forwarder beside the worker starts the
journey (so the latency includes its polling interval, 0.5 s when idle).

    python bench/triggered.py [--rate 20] [--seconds 30] [--broadcast N] [--store postgres]

The API and the worker run as their own processes (``tidings api``, ``worker.py``), as in a
deployment; the simulators record when each push reached them (``received_at``), on the same
clock as the POSTs. The events go out through ``loadgen.py`` (open loop, pre-built requests),
so the benchmark's own client costs the machine little. A few warm-up triggers (first
connections, first provider tokens) are not counted. ``--broadcast N`` also broadcasts one
push to N other profiles, started just before the triggers (once its first pushes are
accepted), so the triggers show how they fare beside a running broadcast.
The last line of output is one JSON object:
  p50_ms, p99_ms            latency from the event POST to the simulator accepting the push
  triggers_per_s            events posted per second, as achieved
  triggers, pushes          events counted, and profiles whose push the simulators accepted
  duplicate_pushes          pushes accepted beyond one per device (collapse ids make a
                            duplicate show once on the device)
  post_p99_ms               the POSTs' own answer time (the event stored)
  history_events_per_push   Temporal history events of the triggered cohorts per push
  cpu_ms_per_trigger        CPU each process spent per trigger: what rate the machine carries
                            (with --broadcast: the broadcast's share included)
  broadcast                 with --broadcast: its profiles, pushes, seconds, deliveries per
                            second, and whether it was still sending after the last trigger
                            was posted (``covered``: every trigger competed with it)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

from broadcast import JOURNEY as BROADCAST
from common import (
    ApiProcess,
    BenchStack,
    WorkerProcess,
    add_store_arguments,
    bench_database,
    bench_home,
    bench_stack,
    cpu_seconds,
    emit,
    history_events,
    log,
    seed,
)
from loadgen import post_open_loop

from tidings.inbound.triggers import entry_workflow_id
from tidings.journeys import parse_definition
from tidings.journeys.predicates import AttributePredicate
from tidings.runs.start import AudienceChoice, StartedRun, activate_trigger, start_run
from tidings.store.db import Database

EVENT = "signed_up"
JOURNEY = {
    "id": "welcome-trigger",
    "name": "Welcome on sign-up",
    "app": "bench",
    "trigger": {"event": EVENT},
    "nodes": [
        {
            "id": "welcome",
            "type": "push",
            "content": {"title": "Welcome {{ first_name }}", "body": "Glad you joined."},
        }
    ],
}
WARM_UP = 5


async def fire(
    api: ApiProcess, profiles: list[str], rate: float
) -> tuple[dict[str, float], list[float], float]:
    """POST one event per profile at ``rate`` per second (open loop); return when each was
    due (wall clock), each POST's answer time from then, and the firing's duration."""
    bodies = [{"profile_id": p, "name": EVENT, "event_id": f"bench-{p}"} for p in profiles]
    result = await post_open_loop(
        api.url,
        "/v1/events",
        bodies,
        rate,
        headers={"Authorization": f"Bearer {api.ADMIN_KEY}"},
        # enough for a slow answer's wait, few enough that none idles past the API's
        # keep-alive (5 s) at a low rate
        connections=max(4, min(64, int(rate * 2))),
    )
    if result.failures:
        raise RuntimeError(f"connections failed: {result.failures[:3]}")
    for answer in result.answers:
        if answer.status != 202 or json.loads(answer.body)["duplicate"]:
            raise RuntimeError(f"event answered {answer.status}: {answer.body[:200]!r}")
    posted = {p: result.started_at + index / rate for index, p in enumerate(profiles)}
    return posted, [a.latency_s for a in result.answers], result.elapsed_s


async def accepted_at(
    stack: BenchStack, tokens: dict[str, str], already: int, deadline_s: float, others: int = 0
) -> tuple[dict[str, float], int]:
    """When the simulators first accepted a push for each profile (any of its devices), and
    how many pushes they accepted beyond one per device. Polls the simulators' counters
    (cheap) and reads the records once they can all be in (``others``: pushes to other
    devices expected meanwhile), and once more at the deadline, whatever the count."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while loop.time() < deadline:
        if await accepted_count(stack) - already >= len(tokens) + others:
            received, extra, seen = await read_accepted(stack, tokens)
            if seen == len(tokens):
                return received, extra
        await asyncio.sleep(0.5)
    received, extra, _ = await read_accepted(stack, tokens)
    return received, extra


async def read_accepted(
    stack: BenchStack, tokens: dict[str, str]
) -> tuple[dict[str, float], int, int]:
    """From the simulators' records: per profile its first accepted push, the pushes
    accepted beyond one per device, and how many of the devices got one."""
    received: dict[str, float] = {}
    seen: set[str] = set()
    extra = 0
    for provider in ("apns", "fcm"):
        for record in await stack.sims.accepted(provider):
            profile_id = tokens.get(record.token)
            if profile_id is None:
                continue
            extra += record.token in seen
            seen.add(record.token)
            received[profile_id] = min(received.get(profile_id, 1e18), record.received_at)
    return received, extra, len(seen)


async def until_accepted(stack: BenchStack, count: int) -> None:
    for _ in range(6000):
        if await accepted_count(stack) >= count:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the simulators never accepted {count} pushes")


async def accepted_count(stack: BenchStack) -> int:
    stats = await stack.sims.stats()
    return int(stats["apns"]["accepted"] + stats["fcm"]["accepted"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


GROUP = "group"  # the attribute that puts the --broadcast profiles in its audience


async def start_broadcast(stack: BenchStack) -> StartedRun:
    db = Database(stack.settings.resolved_database_url)
    try:
        return await start_run(
            stack.client,
            db,
            stack.settings,
            parse_definition(BROADCAST),
            audience=AudienceChoice(where=[AttributePredicate(attribute=GROUP, value="broadcast")]),
        )
    finally:
        await db.dispose()


async def main(args: argparse.Namespace) -> None:
    count = int(args.rate * args.seconds)
    triggered = count + WARM_UP
    with bench_home(args.home) as home, bench_database(args.store, args.postgres) as url:
        async with bench_stack(home, url) as stack:
            devices = await seed(
                stack,
                triggered + args.broadcast,
                attributes=lambda n: {GROUP: "broadcast"} if n >= triggered else {},
            )
            trigger_devices = devices[
                : next(
                    (i for i, d in enumerate(devices) if int(d.profile_id[1:]) >= triggered),
                    len(devices),
                )
            ]
            broadcast_devices = len(devices) - len(trigger_devices)
            profiles = sorted({device.profile_id for device in trigger_devices})
            db = Database(stack.settings.resolved_database_url)
            try:
                await activate_trigger(db, parse_definition(JOURNEY))
            finally:
                await db.dispose()
            log(f"seeded {len(profiles)} profiles; firing {count} events at {args.rate}/s")
            broadcast: dict[str, object] = {}
            async with WorkerProcess(stack.env, home), ApiProcess(stack.env, home) as api:
                warm, measured = profiles[:WARM_UP], profiles[WARM_UP:]
                await fire(api, warm, args.rate)
                warm_set = set(warm)
                await accepted_at(
                    stack,
                    {d.token: d.profile_id for d in trigger_devices if d.profile_id in warm_set},
                    0,
                    60,
                )
                before = await accepted_count(stack)
                run: StartedRun | None = None
                if args.broadcast:
                    run = await start_broadcast(stack)
                    broadcast_started = time.perf_counter()
                    await until_accepted(stack, before + 100)
                    log(f"broadcast to {args.broadcast} profiles sending; firing")
                # each profile's push goes to all of its devices: count them all
                wanted = set(measured)
                expected = {
                    d.token: d.profile_id for d in trigger_devices if d.profile_id in wanted
                }
                cpu_before = cpu_seconds()
                posted, answers, elapsed = await fire(api, measured, args.rate)
                fired_at = time.perf_counter()
                if run is not None:
                    await run.handle.result()
                    ended = time.perf_counter()
                    broadcast = {
                        "profiles": args.broadcast,
                        "pushes": broadcast_devices,
                        "seconds": round(ended - broadcast_started, 1),
                        "deliveries_per_s": round(
                            broadcast_devices / (ended - broadcast_started), 1
                        ),
                        "covered": ended > fired_at,
                    }
                received, duplicates = await accepted_at(
                    stack, expected, before, 120 + 10 * args.broadcast / 1000, broadcast_devices
                )
                cpu_after = cpu_seconds()
            latencies = [(received[p] - posted[p]) * 1000 for p in measured if p in received]
            # every entry's cohort of one (warm-up included), once visibility has caught up
            prefix = entry_workflow_id(str(JOURNEY["id"]), "")
            counted = (0, 0)
            for _ in range(100):
                await asyncio.sleep(0.5)
                found = await history_events(stack.client, prefix)
                if found == counted and found[1] >= len(profiles):
                    break
                counted = found
            events, executions = counted
            if len(latencies) < len(measured):
                log(f"{len(measured) - len(latencies)} triggers got no push in time")
            emit(
                {
                    "p50_ms": round(statistics.median(latencies), 1),
                    "p99_ms": round(percentile(latencies, 0.99), 1),
                    "max_ms": round(max(latencies), 1),
                    "triggers_per_s": round(len(measured) / elapsed, 2),
                    "triggers": len(measured),
                    "pushes": len(latencies),
                    "duplicate_pushes": duplicates,
                    "post_p99_ms": round(percentile(answers, 0.99) * 1000, 1),
                    "history_events_per_push": round(events / max(1, executions), 2),
                    "cpu_ms_per_trigger": {
                        role: round(
                            (cpu_after[role] - cpu_before.get(role, 0)) * 1000 / len(measured), 1
                        )
                        for role in sorted(cpu_after)
                    },
                    "cpu_count": os.cpu_count(),
                    "load_average": [round(x, 1) for x in os.getloadavg()],
                }
                | ({"broadcast": broadcast} if broadcast else {})
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to fire")
    parser.add_argument(
        "--broadcast",
        type=int,
        default=0,
        help="also broadcast one push to this many other profiles, beside the triggers",
    )
    parser.add_argument("--home", help="directory for the run's state (default: a temporary one)")
    add_store_arguments(parser)
    asyncio.run(main(parser.parse_args()))
