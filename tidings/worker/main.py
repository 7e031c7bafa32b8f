"""Running a worker process: what `python worker.py` and `tidings worker` do."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence

from temporalio.client import Client

from tidings.egress import EgressPolicy
from tidings.inbound.forwarder import forwarding
from tidings.inbound.triggers import EntryOptions
from tidings.observe.health import Readiness, readiness
from tidings.observe.sampler import sampling
from tidings.observe.server import serving_observe
from tidings.settings import Settings
from tidings.startup import prepare_store
from tidings.store.db import Database
from tidings.temporal.client import connect, metrics_runtime
from tidings.temporal.devserver import temporal_server
from tidings.webhooks.dispatcher import dispatching
from tidings.worker.resources import QUEUE_ROLES, build_workers, worker_resources

log = logging.getLogger(__name__)


async def run_worker(
    settings: Settings,
    stop: asyncio.Event | None = None,
    roles: Sequence[str] = QUEUE_ROLES,
) -> None:
    """Serve the task queues of ``roles`` until SIGINT/SIGTERM (or ``stop``), then drain
    gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    prepare_store(settings)
    runtime = (
        metrics_runtime(settings.temporal_metrics_address)
        if settings.temporal_metrics_address
        else None
    )
    async with temporal_server(settings) as address:
        client = await connect(address, runtime=runtime)
        async with (
            worker_resources(settings) as resources,
            observing(settings, resources.db, client),
        ):
            workers = build_workers(client, settings, resources, roles)
            log.info(
                "worker on task %s %s (Temporal %s, store %s)",
                "queue" if len(workers) == 1 else "queues",
                ", ".join(repr(w.task_queue) for w in workers),
                address,
                resources.db.describe(),
            )
            async with contextlib.AsyncExitStack() as running:
                for worker in workers:
                    await running.enter_async_context(worker)
                # the one forwarder of interactions and custom events runs beside the
                # workers (DESIGN.md decision 6); triggered entries go to the interpreter's
                # task queue
                entries = EntryOptions.of(settings)
                await running.enter_async_context(forwarding(client, resources.db, entries=entries))
                # and beside them the dispatcher of the webhook outbox
                egress = EgressPolicy.from_settings(settings)
                await running.enter_async_context(
                    dispatching(resources.db, resources.secrets, egress)
                )
                await stop.wait()
                log.info("stopping: finishing the tasks in hand")


@contextlib.asynccontextmanager
async def observing(settings: Settings, db: Database, client: Client) -> AsyncIterator[None]:
    """The worker's metrics endpoint (with /healthz and /readyz) and the gauges it samples,
    when a metrics address is configured."""
    if not settings.worker_metrics_address:
        yield
        return

    async def check() -> Readiness:
        return await readiness(db, client)

    async with serving_observe(settings.worker_metrics_address, check), sampling(db, client):
        yield
