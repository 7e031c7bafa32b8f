"""Several workers and API replicas against one Temporal server and one PostgreSQL.

    python bench/scaleout.py --profiles 20000 --workers 1,2,4 [--rate-limit 200]

For each count N: a fresh PostgreSQL database on the server at --postgres, seeded like
broadcast.py (about 1.5 devices a profile), one embedded Temporal dev server standing in for
the cluster (shared by every N, a task queue of its own per N), N ``worker.py`` processes and
N ``tidings api`` processes, all in production mode (TEMPORAL_ADDRESS, TIDINGS_SECRET_KEY and
TIDINGS_ADMIN_KEY set). Three phases, the simulators' records reset before each:

  broadcast    one push node to every profile, no rate limit: throughput, history events
               per push, and every device got exactly one push (simulators' summary)
  rate         the same to every profile again, the app limited to --rate-limit sends/s:
               the rate the simulators saw after the first second (the bucket holds one
               second's burst), against the limit
  triggered    one custom event per profile for --triggers profiles, posted round-robin to
               the N API replicas, each starting a one-push triggered journey: exactly one
               push per device, history events per push

The last line of output is one JSON object: a list of per-N results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from common import (
    APP_ID,
    REPO,
    BenchStack,
    SeededDevice,
    bench_home,
    bench_stack,
    emit,
    history_events,
    log,
    seed,
)
from sqlalchemy import update

from tidings.inbound.triggers import entry_workflow_id
from tidings.journeys import parse_definition
from tidings.runs.start import activate_trigger, start_run
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.migrate import upgrade
from tidings.store.models import App
from tidings.temporal.devserver import free_port

ADMIN_KEY = "bench-admin-key"
EVENT = "joined"


def one_push(journey_id: str, **extra: Any) -> Any:
    return parse_definition(
        {
            "id": journey_id,
            "name": journey_id,
            "app": APP_ID,
            "nodes": [{"id": "hello", "type": "push", "content": {"title": "Hi", "body": "b"}}],
        }
        | extra
    )


def fresh_database(server: str, name: str) -> str:
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def store_counters(server: str, name: str) -> dict[str, int]:
    """The database's size and its row writes and commits so far (PostgreSQL's statistics,
    flushed by the server within about a second)."""
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        row = connection.execute(
            "SELECT pg_database_size(datname), tup_inserted, tup_updated, tup_deleted, "
            "xact_commit FROM pg_stat_database WHERE datname = %s",
            (name,),
        ).fetchone()
    assert row is not None
    size, inserted, updated, deleted, commits = (int(v) for v in row)
    return {"bytes": size, "rows_written": inserted + updated + deleted, "commits": commits}


class Processes:
    """N copies of a command, each its own process with its own log, stopped by SIGTERM."""

    def __init__(self, command: list[str], envs: list[dict[str, str]], home: Path, role: str):
        self.logs = [(home / f"{role}-{i}.log").open("wb") for i in range(len(envs))]
        self.processes = [
            subprocess.Popen(command, env=env, cwd=home, stdout=log_, stderr=subprocess.STDOUT)
            for env, log_ in zip(envs, self.logs, strict=True)
        ]

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
            if process.poll() is None:
                process.kill()
        for handle in self.logs:
            handle.close()


async def wait_healthy(urls: list[str], processes: Processes) -> None:
    async with httpx.AsyncClient() as client:
        for url in urls:
            for _ in range(600):
                if any(p.poll() is not None for p in processes.processes):
                    raise RuntimeError("an API process exited")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"the API at {url} did not answer")


async def exactly_once(stack: BenchStack, devices: list[SeededDevice]) -> dict[str, int]:
    """Per device: pushes the simulators accepted since their last reset (want 1 each)."""
    accepted: dict[str, int] = {}
    for provider in ("apns", "fcm"):
        summary = await stack.sims.summary(provider)
        accepted |= {token: s.accepted for token, s in summary.tokens.items()}
    counts = [accepted.get(d.token, 0) for d in devices]
    return {
        "devices": len(devices),
        "lost": sum(1 for c in counts if c == 0),
        "extra": sum(c - 1 for c in counts if c > 1),
    }


async def accepted_total(stack: BenchStack) -> int:
    stats = await stack.sims.stats()
    return int(stats["apns"]["accepted"] + stats["fcm"]["accepted"])


async def broadcast(
    stack: BenchStack, db: Database, journey_id: str, settings: Any
) -> tuple[float, int, int, int, int]:
    """(seconds, delivered, history events, actions, sending workers) of a one-push run to
    every profile."""
    started_at = time.perf_counter()
    started = await start_run(stack.client, db, settings, one_push(journey_id))
    result = await started.handle.result()
    elapsed = time.perf_counter() - started_at
    events = executions = 0
    for _ in range(100):  # visibility lags the histories a little
        events, executions = await history_events(stack.client, started.run_id)
        if executions >= result.cohorts + 1:
            break
        await asyncio.sleep(0.2)
    delivered = int(result.counts.get("push.delivered", 0))
    actions, _, identities = await run_histories(stack, started.run_id)
    return elapsed, delivered, events, actions, len(identities)


# History events that Temporal Cloud bills as one action each (docs.temporal.io/cloud/actions):
# a workflow started (by a client, as a child, by continue-as-new or signal-with-start), a
# signal received, a timer, a search-attribute or properties update, and an activity attempt
# (counted from each started event's attempt number). Local activities are billed once per
# workflow task that ran any: counted here as one per marker, an upper bound. Heartbeats
# recorded on the server are billed too but are not in histories: not counted.
ACTION_EVENTS = {
    "workflow_execution_started_event_attributes",
    "workflow_execution_signaled_event_attributes",
    "timer_started_event_attributes",
    "upsert_workflow_search_attributes_event_attributes",
    "workflow_properties_modified_event_attributes",
    "marker_recorded_event_attributes",
}


async def run_histories(stack: BenchStack, prefix: str) -> tuple[int, int, set[str]]:
    """(actions, executions, identities of the workers that ran activities) over every
    execution whose workflow id starts with ``prefix``."""
    actions = executions = 0
    identities: set[str] = set()
    async for execution in stack.client.list_workflows(f'WorkflowId STARTS_WITH "{prefix}"'):
        history = await stack.client.get_workflow_handle(
            execution.id, run_id=execution.run_id
        ).fetch_history()
        executions += 1
        for event in history.events:
            kind = event.WhichOneof("attributes")
            if kind in ACTION_EVENTS:
                actions += 1
            elif kind == "activity_task_started_event_attributes":
                started = event.activity_task_started_event_attributes
                actions += max(1, started.attempt)
                identities.add(started.identity)
    return actions, executions, identities


async def observed_rate(stack: BenchStack) -> float:
    """Accepted pushes per second after the first second (the bucket's burst)."""
    times: list[float] = []
    for provider in ("apns", "fcm"):
        times += [r.received_at for r in await stack.sims.accepted(provider)]
    times.sort()
    steady = [t for t in times if t >= times[0] + 1.0]
    if len(steady) < 2:
        return 0.0
    return (len(steady) - 1) / (steady[-1] - steady[0])


async def triggered(
    stack: BenchStack, db: Database, urls: list[str], profiles: list[str], journey_id: str
) -> float:
    await activate_trigger(db, one_push(journey_id, trigger={"event": EVENT}))
    clients = [
        httpx.AsyncClient(base_url=u, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=300)
        for u in urls
    ]
    started_at = time.perf_counter()
    try:

        async def post(index: int, profile_id: str) -> None:
            answer = await clients[index % len(clients)].post(
                "/v1/events",
                json={"profile_id": profile_id, "name": EVENT, "event_id": f"{journey_id}-{index}"},
            )
            if answer.status_code != 202:
                raise RuntimeError(f"{answer.status_code} {answer.text}")

        gate = asyncio.Semaphore(32)

        async def gated(index: int, profile_id: str) -> None:
            async with gate:
                await post(index, profile_id)

        await asyncio.gather(*(gated(i, p) for i, p in enumerate(profiles)))
        for profile_id in profiles:
            handle = stack.client.get_workflow_handle(entry_workflow_id(journey_id, profile_id))
            await asyncio.wait_for(handle.result(), timeout=600)
    finally:
        for client in clients:
            await client.aclose()
    return time.perf_counter() - started_at


async def one_count(
    stack: BenchStack, args: argparse.Namespace, workers: int, home: Path, key: str
) -> dict[str, Any]:
    name = f"tidings_scaleout_{workers}"
    url = fresh_database(args.postgres, name)
    upgrade(url)
    values = stack.settings.model_dump() | {
        "database_url": url,
        "task_queue": f"scaleout-{uuid.uuid4().hex[:8]}",
        "cohort_size": args.cohort_size,
    }
    settings = Settings(_env_file=None, **values)
    stack.settings = settings
    devices = await seed(stack, args.profiles)
    profiles = sorted({d.profile_id for d in devices})
    env = stack.env | {
        "TIDINGS_DATABASE_URL": url,
        "TIDINGS_TASK_QUEUE": settings.task_queue,
        "TIDINGS_SECRET_KEY": key,
        "TIDINGS_ADMIN_KEY": ADMIN_KEY,
        "TIDINGS_ENV": "production",
    }
    ports = [free_port() for _ in range(workers)]
    worker_procs = Processes(
        [sys.executable, str(REPO / "worker.py")], [env] * workers, home, f"worker{workers}"
    )
    api_procs = Processes(
        [sys.executable, "-c", "from tidings.cli.app import main; main()", "api"],
        [env | {"TIDINGS_API_PORT": str(p)} for p in ports],
        home,
        f"api{workers}",
    )
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    db = Database(url)
    result: dict[str, Any] = {"workers": workers, "api_replicas": workers}
    try:
        await wait_healthy(urls, api_procs)
        await stack.sims.reset()
        await asyncio.sleep(1.5)  # the statistics collector catches up with the seeding
        before = store_counters(args.postgres, name)
        elapsed, delivered, events, actions, senders = await broadcast(
            stack, db, f"wide-{workers}", settings
        )
        await asyncio.sleep(1.5)
        after = store_counters(args.postgres, name)
        result["broadcast"] = {
            "sending_workers": senders,
            "actions_per_push": round(actions / max(1, delivered), 5),
            "store_bytes_per_push": round((after["bytes"] - before["bytes"]) / max(1, delivered)),
            "store_rows_written_per_push": round(
                (after["rows_written"] - before["rows_written"]) / max(1, delivered), 2
            ),
            "store_commits_per_push": round(
                (after["commits"] - before["commits"]) / max(1, delivered), 3
            ),
            "deliveries_per_s": round(delivered / elapsed, 1),
            "seconds": round(elapsed, 1),
            "history_events_per_push": round(events / max(1, delivered), 4),
            **await exactly_once(stack, devices),
        }
        log(f"N={workers} broadcast {result['broadcast']}")

        async with db.write() as session:
            await session.exec(
                update(App).where(App.id == APP_ID).values(send_rate_per_s=args.rate_limit)  # type: ignore[arg-type]
            )
        await stack.sims.reset()
        elapsed, delivered, _, _, senders = await broadcast(
            stack, db, f"limited-{workers}", settings
        )
        rate = await observed_rate(stack)
        result["rate"] = {
            "sending_workers": senders,
            "limit_per_s": args.rate_limit,
            "observed_per_s": round(rate, 1),
            "off_by": round(rate / args.rate_limit - 1, 3),
            "seconds": round(elapsed, 1),
            **await exactly_once(stack, devices),
        }
        log(f"N={workers} rate {result['rate']}")
        async with db.write() as session:
            await session.exec(
                update(App).where(App.id == APP_ID).values(send_rate_per_s=None)  # type: ignore[arg-type]
            )

        await stack.sims.reset()
        chosen = profiles[: args.triggers]
        journey_id = f"trig-{workers}"
        elapsed = await triggered(stack, db, urls, chosen, journey_id)
        wanted = set(chosen)
        events = executions = 0
        for _ in range(100):
            events, executions = await history_events(
                stack.client, entry_workflow_id(journey_id, "")
            )
            if executions >= len(chosen):
                break
            await asyncio.sleep(0.2)
        pushed = await accepted_total(stack)
        actions, _, _ = await run_histories(stack, entry_workflow_id(journey_id, ""))
        result["triggered"] = {
            "actions_per_push": round(actions / max(1, pushed), 3),
            "actions_per_trigger": round(actions / max(1, executions), 2),
            "triggers": len(chosen),
            "triggers_per_s": round(len(chosen) / elapsed, 1),
            "history_events_per_push": round(events / max(1, pushed), 3),
            "history_events_per_trigger": round(events / max(1, executions), 2),
            **await exactly_once(stack, [d for d in devices if d.profile_id in wanted]),
        }
        log(f"N={workers} triggered {result['triggered']}")
    finally:
        await db.dispose()
        api_procs.stop()
        worker_procs.stop()
    return result


async def main(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.workers.split(",")]
    with bench_home(args.home) as home:
        first = fresh_database(args.postgres, "tidings_scaleout_seed")
        async with bench_stack(home, database_url=first) as stack:
            # the key seed() generated into the home, shared by every process as production
            # requires (seed() writes the app's credentials under it)
            from tidings.store.secrets import SecretBox

            SecretBox.from_settings(None, home)
            key = (home / "secret.key").read_text().strip()
            results = []
            for workers in counts:
                results.append(await one_count(stack, args, workers, home, key))
            emit(
                {
                    "profiles": args.profiles,
                    "cohort_size": args.cohort_size,
                    "rate_limit_per_s": args.rate_limit,
                    "triggers": args.triggers,
                    "cpu_count": os.cpu_count(),
                    "runs": results,
                }
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,4", help="worker (and API) counts to run")
    parser.add_argument(
        "--cohort-size",
        type=int,
        default=500,
        help="profiles per cohort: an audience of fewer than N cohorts cannot spread over N "
        "workers (use small cohorts for small audiences)",
    )
    parser.add_argument("--rate-limit", type=float, default=200.0, help="the app's sends/s")
    parser.add_argument("--triggers", type=int, default=500, help="triggered entries per run")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--home", help="directory for the run's state (default: a temporary one)")
    asyncio.run(main(parser.parse_args()))
