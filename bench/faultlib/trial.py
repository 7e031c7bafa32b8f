"""One store's suite: its processes, then one trial per scenario, each judged.

The simulators, Temporal's dev server and (for PostgreSQL) the private server are shared by
the store's trials; each trial has a fresh database, its own task queue and its own workers,
so a trial that did not finish cannot disturb the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import (
    APP_ID,
    BUNDLE_ID,
    KEY_ID,
    PROJECT,
    TEAM_ID,
    BenchStack,
    SeededDevice,
    log,
    seed,
)
from sqlmodel import col, select
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from tidings.journeys import parse_definition
from tidings.push.credentials import ApnsTokenCredentials, AppCredentials, FcmCredentials
from tidings.runs.start import start_run
from tidings.settings import Settings
from tidings.sim import SimulatorClient
from tidings.sim.runner import read_endpoints
from tidings.store.db import Database
from tidings.store.migrate import upgrade
from tidings.store.models import Delivery, Device
from tidings.temporal.client import connect
from workflows.run import JourneyRunWorkflow

from .checks import Accepted, DeviceEntry, Findings, LedgerEntry, Targets, failures, judge
from .processes import PrivatePostgres, Simulators, Temporal, Workers
from .scenarios import FaultContext, Scenario, Size
from .simcontrol import PROVIDERS, SimControl, connection_faults

UNREGISTERED_SHARE = 0.03  # of the seeded tokens, answered as unregistered by the simulators
# What the suite passes to the worker when this tree has the setting (see Settings)
RETRY_HORIZON_S = 3600


# Alembic's migration context is process-global: trials running side by side migrate in turn
_MIGRATING = threading.Lock()


def _migrate(database_url: str) -> None:
    with _MIGRATING:
        upgrade(database_url)


def journey(pushes: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    for n in range(pushes):
        node: dict[str, Any] = {
            "id": f"push{n + 1}",
            "type": "push",
            "content": {"title": f"Hello {{{{ first_name }}}} ({n + 1})", "body": "News."},
        }
        if n + 1 < pushes:
            node["next"] = f"push{n + 2}"
        nodes.append(node)
    return {"id": f"faults-{pushes}push", "name": "Fault suite", "app": APP_ID, "nodes": nodes}


@dataclass
class TrialResult:
    store: str
    scenario: str
    profiles: int
    devices: int
    completed: bool
    run_status: str
    wall_s: float
    first_push_s: float | None
    disruptions: int
    workers_started: int
    worker_unexpected_exits: int
    findings: Findings
    failed: list[str]
    in_flight_bound: int
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        findings: dict[str, Any] = data.pop("findings")
        findings["disagreements"] = self.findings.disagreements
        findings["extra_max_per_disruption"] = self.findings.extra_max_per_disruption
        findings["extra_after_disruptions"] = self.findings.extra_after_disruptions
        return data | findings


@dataclass
class Suite:
    """Options every trial of the run shares."""

    size: Size
    seed: int
    jobs: int = 1  # trials of a store run side by side (those restarting a server run alone)
    # write each trial's records, ledger and devices to <home>/trials/NAME/evidence.json
    keep_evidence: bool = False


@dataclass
class _Stack:
    """What a store's trials share: Temporal's dev server and the private PostgreSQL."""

    home: Path
    base_env: dict[str, str]
    temporal: Temporal
    postgres: PrivatePostgres | None
    client: Client
    # trials side by side start one at a time (seeding, a worker's start: CPU-bound)
    starting: asyncio.Lock = field(default_factory=asyncio.Lock)


@contextlib.asynccontextmanager
async def store_stack(home: Path, store: str) -> AsyncIterator[_Stack]:
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TIDINGS_", "TEMPORAL_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    # bytecode cached, as on any deployed worker (see bench/common.py)
    base_env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    async with contextlib.AsyncExitStack() as stack:
        postgres: PrivatePostgres | None = None
        if store == "postgres":
            postgres = await asyncio.to_thread(PrivatePostgres)
            stack.callback(postgres.close)
            await asyncio.to_thread(postgres.start)
        temporal = Temporal(home / "temporal")
        stack.callback(temporal.close)
        await asyncio.to_thread(temporal.start)
        client = await _connect(temporal.address)
        yield _Stack(home, base_env, temporal, postgres, client)


async def _connect(address: str, timeout_s: float = 60) -> Client:
    """A client once the dev server is healthy (it listens a little before it serves)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await connect(address)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@dataclass
class _Providers:
    """One trial's simulators: their process, control API and the app's credentials."""

    endpoints: dict[str, Any]
    control: SimControl
    sims: SimulatorClient
    credentials: AppCredentials
    actions: frozenset[str]


@contextlib.asynccontextmanager
async def trial_simulators(home: Path, env: dict[str, str]) -> AsyncIterator[_Providers]:
    """The simulators as a process of the trial's own, so trials may run side by side."""
    async with contextlib.AsyncExitStack() as stack:
        simulators = await asyncio.to_thread(Simulators, home, env)
        stack.callback(simulators.close)
        endpoints = read_endpoints(home)
        control = SimControl(endpoints["control_url"])
        stack.push_async_callback(control.aclose)
        sims = await stack.enter_async_context(SimulatorClient(endpoints["control_url"]))
        key = await sims.create_apns_key(TEAM_ID, KEY_ID, [BUNDLE_ID])
        account = await sims.create_fcm_service_account(PROJECT)
        credentials = AppCredentials(
            app_id=APP_ID,
            version=1,
            apns=ApnsTokenCredentials(
                team_id=TEAM_ID, key_id=KEY_ID, bundle_id=BUNDLE_ID, signing_key=key
            ),
            fcm=FcmCredentials(service_account=json.dumps(account)),
        )
        actions = await control.supported_actions()
        yield _Providers(endpoints, control, sims, credentials, actions)


def _settings_values(
    providers: _Providers, suite: Suite, scenario: Scenario, trial_home: Path, database_url: str
) -> dict[str, Any]:
    size = suite.size
    values: dict[str, Any] = {
        "home": trial_home,
        "database_url": database_url,
        "apns_endpoint": providers.endpoints["apns_endpoint"],
        "fcm_endpoint": providers.endpoints["fcm_endpoint"],
        "provider_ca_file": Path(providers.endpoints["ca_file"]),
        "task_queue": f"faults-{scenario.name}",
        "log_level": "WARNING",
        "send_concurrency": size.send_concurrency,
        "cohort_size": size.cohort_size,
        "audience_page_size": size.audience_page_size,
        "delivery_heartbeat_timeout_s": size.heartbeat_timeout_s,
        "delivery_max_backoff_s": size.max_backoff_s,
    }
    # settings the delivery fix adds: passed only where this tree has them
    if "delivery_retry_horizon_s" in Settings.model_fields:
        values["delivery_retry_horizon_s"] = RETRY_HORIZON_S
    values.update(scenario.settings(size))
    return {k: v for k, v in values.items() if k in Settings.model_fields}


async def _wait_for_poller(client: Client, task_queue: str, timeout_s: float = 90) -> None:
    """Until a worker polls the trial's task queue (so the run starts on a live worker)."""
    deadline = time.monotonic() + timeout_s
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    while time.monotonic() < deadline:
        with contextlib.suppress(RPCError):
            if (await client.workflow_service.describe_task_queue(request)).pollers:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no worker polled {task_queue!r} within {timeout_s:.0f} s")


async def _wait_for_run(client: Client, run_id: str, deadline: float) -> str | None:
    """The run's final status ("completed", "failed", ...), or None at the deadline. Rides
    out Temporal being down (its errors are retried until the deadline)."""
    handle = client.get_workflow_handle_for(JourneyRunWorkflow.run, run_id)
    while time.monotonic() < deadline:
        try:
            description = await handle.describe()
            status = description.status
            if status == WorkflowExecutionStatus.COMPLETED:
                return (await handle.result()).status
            if status not in (None, WorkflowExecutionStatus.RUNNING) and (
                status != WorkflowExecutionStatus.CONTINUED_AS_NEW
            ):
                return status.name.lower()
        except RPCError:
            pass
        await asyncio.sleep(0.5)
    return None


async def _supervise(ctx: FaultContext) -> None:
    """Replace a worker that died on its own; its death is a disruption like a kill."""
    while not ctx.finished.is_set():
        if await asyncio.to_thread(ctx.workers.replace_if_dead):
            ctx.disrupted()
            log("a worker exited on its own; started a new one")
        await asyncio.sleep(0.5)


async def _read_store(database_url: str) -> tuple[list[LedgerEntry], list[DeviceEntry]]:
    db = Database(database_url)
    try:
        async with db.read() as session:
            # whole rows: a status this tree's enum does not know yet is read as it is stored
            rows = await session.exec(select(Delivery))
            ledger = [
                LedgerEntry(
                    row.tracking_id, row.node_id, row.device_id, str(row.status), row.attempts
                )
                for row in rows.all()
            ]
            found = await session.exec(select(col(Device.id), col(Device.token), col(Device.state)))
            devices = [DeviceEntry(i, t, str(s)) for i, t, s in found.all() if i is not None]
    finally:
        await db.dispose()
    return ledger, devices


async def _seed(
    bench: BenchStack, control: SimControl, suite: Suite
) -> tuple[list[SeededDevice], set[str]]:
    """The trial's profiles and devices; some tokens answered as unregistered (the same
    tokens in every trial of the run, so trials compare)."""
    seeded = await seed(bench, suite.size.profiles, seed=suite.seed)
    chooser = random.Random(f"{suite.seed}/unregistered")
    unregistered = {d.token for d in seeded if chooser.random() < UNREGISTERED_SHARE}
    for provider in PROVIDERS:
        tokens = sorted(
            d.token for d in seeded if d.provider == provider and d.token in unregistered
        )
        if tokens:
            await control.mark_unregistered(provider, tokens)
    return seeded, unregistered


async def run_trial(
    stack: _Stack, suite: Suite, scenario: Scenario, store: str, index: int
) -> TrialResult:
    trial_home = stack.home / "trials" / scenario.name
    trial_home.mkdir(parents=True, exist_ok=True)
    async with trial_simulators(trial_home, stack.base_env) as providers:
        return await _trial(stack, providers, suite, scenario, store, index, trial_home)


async def _trial(
    stack: _Stack,
    providers: _Providers,
    suite: Suite,
    scenario: Scenario,
    store: str,
    index: int,
    trial_home: Path,
) -> TrialResult:
    size = suite.size
    rng = random.Random(f"{suite.seed}/{store}/{scenario.name}")
    if stack.postgres is not None:
        database_url = await asyncio.to_thread(
            stack.postgres.create_database, f"faults_{index}_{scenario.name.replace('-', '_')}"
        )
    else:
        database_url = f"sqlite:///{trial_home / 'tidings.db'}"
    await asyncio.to_thread(_migrate, database_url)
    values = _settings_values(providers, suite, scenario, trial_home, database_url)
    settings = Settings(_env_file=None, **values)
    env = stack.base_env | {f"TIDINGS_{k.upper()}": str(v) for k, v in values.items()}
    env["TEMPORAL_ADDRESS"] = stack.temporal.address
    # PostgreSQL beside a dev server on purpose: not the production topology
    env["TIDINGS_ENV"] = "development"
    control = providers.control

    bench = BenchStack(
        trial_home, settings, env, stack.client, providers.sims, providers.credentials
    )
    workers = Workers(env, trial_home)
    ctx = FaultContext(
        size=size,
        rng=rng,
        client=stack.client,
        sims=control,
        workers=workers,
        temporal=stack.temporal,
        postgres=stack.postgres,
        actions=providers.actions,
    )
    definition = parse_definition(journey(scenario.pushes))
    push_nodes = [node.id for node in definition.nodes if node.type == "push"]
    status: str | None = None
    seeded: list[SeededDevice] = []
    unregistered: set[str] = set()
    db = Database(database_url)
    supervisor: asyncio.Task[None] | None = None
    injector: asyncio.Task[None] | None = None
    try:
        async with stack.starting:
            seeded, unregistered = await _seed(bench, providers.control, suite)
            log(
                f"{store}/{scenario.name}: {size.profiles} profiles, {len(seeded)} devices "
                f"({len(unregistered)} unregistered at the simulators)"
            )
            workers.start()
            await _wait_for_poller(stack.client, settings.task_queue)
        await scenario.before_run(ctx)
        started_at = time.time()
        started = await start_run(stack.client, db, settings, definition)
        ctx.run_id = started.run_id
        supervisor = asyncio.create_task(_supervise(ctx))
        injector = asyncio.create_task(scenario.inject(ctx))
        deadline = time.monotonic() + scenario.fault_span(size) + size.settle_s
        status = await _wait_for_run(stack.client, started.run_id, deadline)
        wall_s = time.time() - started_at
    finally:
        ctx.finished.set()
        for task in (injector, supervisor):
            if task is not None:
                try:
                    await task
                except Exception as error:  # a fault that could not be injected: say so
                    ctx.notes["inject_error"] = repr(error)
        for provider in PROVIDERS:
            await control.set_scenario(provider, {})
        await asyncio.to_thread(workers.stop)
        await db.dispose()

    records = [
        Accepted.from_record(r)
        for p in PROVIDERS
        for r in await control.records(p, accepted_only=True)
    ]
    everything = {p: await control.records(p) for p in PROVIDERS}
    faults = connection_faults(everything)
    ledger, devices = await _read_store(database_url)
    if suite.keep_evidence:
        evidence = {
            "started_at": started_at,
            "disruptions": ctx.disruptions,
            "records": everything,
            "ledger": [asdict(e) for e in ledger],
            "devices": [asdict(d) for d in devices],
            "unregistered": sorted(unregistered),
        }
        (trial_home / "evidence.json").write_text(json.dumps(evidence))
    findings = judge(
        push_nodes,
        devices,
        unregistered,
        ledger,
        records,
        ctx.disruptions,
        connection_faults=faults,
        answer_window_s=settings.send_timeout_s,
    )
    completed = status == "completed"
    # in flight plus not yet recorded: send_concurrency per provider (APNs and FCM)
    targets = Targets(in_flight_bound=size.send_concurrency * len(PROVIDERS))
    first = min((r.received_at for r in records), default=None)
    result = TrialResult(
        store=store,
        scenario=scenario.name,
        profiles=size.profiles,
        devices=len(seeded),
        completed=completed,
        run_status=status or "not finished",
        wall_s=round(wall_s, 1),
        first_push_s=None if first is None else round(first - started_at, 2),
        disruptions=len(ctx.disruptions),
        workers_started=workers.started,
        worker_unexpected_exits=workers.unexpected_exits,
        findings=findings,
        failed=failures(findings, completed, targets),
        in_flight_bound=targets.in_flight_bound,
        notes=ctx.notes | {"connection_faults": sum(len(t) for t in faults.values())},
    )
    if workers.unexpected_exits:
        # a worker that dies on its own is a defect of tidings, not a fault the trial made
        result.failed.append(f"workers exited on their own={workers.unexpected_exits}")
        result.notes["worker_exit_codes"] = dict(workers.exit_codes)
        result.notes["worker_log_tail"] = workers.log_tail()
        for line in workers.log_tail():
            log(f"{store}/{scenario.name} worker: {line}")
    verdict = "PASS" if not result.failed else "FAIL: " + "; ".join(result.failed)
    log(f"{store}/{scenario.name}: {result.run_status} in {result.wall_s} s, {verdict}")
    return result


async def run_store(
    home: Path, store: str, suite: Suite, scenarios: list[Scenario]
) -> list[TrialResult]:
    """The store's trials: those that restart a shared server alone, the others up to
    ``suite.jobs`` at a time (each has its own simulators, database and workers)."""
    chosen = [
        (index, s)
        for index, s in enumerate(scenarios)
        if not (s.postgres_only and store != "postgres")
    ]
    results: dict[int, TrialResult] = {}
    async with store_stack(home, store) as stack:
        for index, scenario in chosen:
            if scenario.exclusive or suite.jobs == 1:
                results[index] = await run_trial(stack, suite, scenario, store, index)
        slots = asyncio.Semaphore(suite.jobs)

        async def shared(index: int, scenario: Scenario) -> None:
            async with slots:
                results[index] = await run_trial(stack, suite, scenario, store, index)

        rest = [(i, s) for i, s in chosen if i not in results]
        rest.sort(key=lambda item: -item[1].fault_span(suite.size))  # the longest first
        await asyncio.gather(*(shared(i, s) for i, s in rest))
    ordered = [results[index] for index, _ in chosen]
    _note_hold_ups(ordered)
    return ordered


def _note_hold_ups(results: list[TrialResult]) -> None:
    """How much later than the baseline's the first push came, where that is the measure."""
    baseline = next((r for r in results if r.scenario == "baseline"), None)
    if baseline is None or baseline.first_push_s is None:
        return
    for result in results:
        if result.scenario == "kill-paging" and result.first_push_s is not None:
            result.notes["held_up_s"] = round(result.first_push_s - baseline.first_push_s, 1)
