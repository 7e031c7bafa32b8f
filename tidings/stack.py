"""The embedded stack's composition: serving the API and running a worker inside one event
loop, what a designer's command needs (a client and the store, with an in-process worker
when embedded), and ``tidings up``: every piece at once, in the foreground.

Who owns what (DESIGN.md decision 8): the embedded Temporal server belongs to no single
process (tidings.temporal.devserver); ``tidings up`` stops what it started when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from tidings.egress import EgressPolicy
from tidings.inbound.forwarder import forwarding
from tidings.inbound.triggers import EntryOptions
from tidings.settings import Settings
from tidings.sim import SimulatorEndpoints, shared_simulators
from tidings.startup import prepare_store
from tidings.store.db import Database
from tidings.temporal.client import configured_address, connect
from tidings.temporal.devserver import StackError, TemporalEndpoint, temporal_endpoint
from tidings.webhooks.dispatcher import dispatching
from tidings.worker.main import run_worker
from tidings.worker.resources import QUEUE_ROLES, build_workers, worker_resources

log = logging.getLogger(__name__)

WORKER_READY_TIMEOUT_S = 60.0


@contextlib.asynccontextmanager
async def serving_api(app: object, host: str, port: int) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn inside this event loop; yields its base URL."""
    import uvicorn

    # bound here, not by uvicorn: a port in use is a clear error instead of uvicorn's exit
    try:
        sock = socket.create_server((host, port))
    except OSError as error:
        taken = error.errno == errno.EADDRINUSE
        raise StackError(
            f"the API cannot listen on {host}:{port}: "
            + ("the port is in use; set TIDINGS_API_PORT to a free one" if taken else str(error))
        ) from None
    server = uvicorn.Server(
        uvicorn.Config(
            app,  # type: ignore[arg-type]
            host=host,
            port=port,
            log_config=None,
            log_level="warning",
            lifespan="on",
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise StackError(f"the API could not start on {host}:{port}")
            await asyncio.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


@contextlib.asynccontextmanager
async def running(*workers: Any) -> AsyncIterator[None]:
    """Run Temporal workers in this event loop while the context lasts."""
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        yield
    finally:
        await asyncio.gather(*(worker.shutdown() for worker in workers))
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def engine(settings: Settings) -> AsyncIterator[tuple[Client, Database]]:
    """A Temporal client and the store; in embedded mode also the dev server and a worker,
    so a run started from a laptop makes progress while the command waits."""
    prepare_store(settings)
    async with temporal_endpoint(settings) as temporal:
        client = await connect(temporal.address)
        if configured_address() is not None:
            database = Database(settings.resolved_database_url)
            try:
                yield client, database
            finally:
                await database.dispose()
            return
        async with (
            worker_resources(settings) as resources,
            running(*build_workers(client, settings, resources, QUEUE_ROLES)),
            # beside every worker, the forwarder of interactions and custom events, and the
            # dispatcher of the webhook outbox
            forwarding(client, resources.db, entries=EntryOptions.of(settings)),
            dispatching(resources.db, resources.secrets, EgressPolicy.from_settings(settings)),
        ):
            yield client, resources.db


@contextlib.asynccontextmanager
async def temporal_and_store(settings: Settings) -> AsyncIterator[tuple[Client, Database]]:
    """A Temporal client and the store, without a worker: for commands that only tell
    Temporal something (schedules), whose work the running workers do."""
    prepare_store(settings)
    async with temporal_endpoint(settings) as temporal:
        client = await connect(temporal.address)
        database = Database(settings.resolved_database_url)
        try:
            yield client, database
        finally:
            await database.dispose()


@contextlib.asynccontextmanager
async def store_only(settings: Settings) -> AsyncIterator[Database]:
    prepare_store(settings)
    database = Database(settings.resolved_database_url)
    try:
        yield database
    finally:
        await database.dispose()


# --- tidings up ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StackAddresses:
    """Where each piece of a running ``tidings up`` listens."""

    home: Path
    api: str
    temporal: TemporalEndpoint
    simulators: SimulatorEndpoints | None
    task_queue: str

    @property
    def docs(self) -> str:
        return f"{self.api}/docs"


async def serve_stack(
    settings: Settings,
    announce: Callable[[StackAddresses], None],
    *,
    simulators: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Run Temporal's dev server (unless one is configured or already running), the
    simulators (unless running, or ``simulators`` is False), the API and one worker with
    its forwarder, until SIGINT/SIGTERM (or ``stop``); then stop, in reverse order, every
    piece this call started. A second signal stops at once, without draining the worker."""
    stop = stop or asyncio.Event()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            main.cancel()  # asked twice: no more waiting for the worker to drain
        stop.set()

    def handle_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # no such handlers on Windows
                loop.add_signal_handler(sig, on_signal)

    handle_signals()
    try:
        await _serve_stack(settings, announce, simulators, stop, handle_signals)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)


async def _serve_stack(
    settings: Settings,
    announce: Callable[[StackAddresses], None],
    simulators: bool,
    stop: asyncio.Event,
    handle_signals: Callable[[], None],
) -> None:
    from tidings.api.app import create_app

    await asyncio.to_thread(prepare_store, settings)
    async with contextlib.AsyncExitStack() as stack:
        temporal = await stack.enter_async_context(
            temporal_endpoint(settings, stop_if_started=True)
        )
        sims: SimulatorEndpoints | None = None
        if simulators and not stop.is_set():
            sims = await stack.enter_async_context(shared_simulators(settings.home))
            settings = settings.model_copy(
                update={
                    "apns_endpoint": sims.apns_endpoint,
                    "fcm_endpoint": sims.fcm_endpoint,
                    "provider_ca_file": sims.ca_file,
                }
            )
        if stop.is_set():
            return
        api = await stack.enter_async_context(
            serving_api(create_app(settings), settings.api_host, settings.api_port)
        )
        worker = asyncio.create_task(run_worker(settings, stop))
        stack.push_async_callback(_finish_worker, worker, stop)
        client = await connect(temporal.address)
        await _worker_polling(client, settings.task_queue, worker, stop)
        # the worker installed its own handlers (the same stop); a second Ctrl-C is ours
        handle_signals()
        if stop.is_set():
            return
        announce(StackAddresses(settings.home, api, temporal, sims, settings.task_queue))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({stopped, worker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if worker.done() and not stop.is_set():
            stop.set()
            worker.result()  # its error, if it failed
            raise StackError("the worker stopped on its own")


async def _finish_worker(worker: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    if not worker.done():  # a worker that ended already was seen ending, error and all
        await worker


async def _worker_polling(
    client: Client, task_queue: str, worker: asyncio.Task[None], stop: asyncio.Event
) -> None:
    """Wait until this process' worker polls its task queue (or it fails, or a stop)."""
    identity = f"{os.getpid()}@"  # the SDK's default identity: pid@host
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = asyncio.get_running_loop().time() + WORKER_READY_TIMEOUT_S
    while not stop.is_set():
        if worker.done():
            worker.result()
            raise StackError("the worker stopped before it polled its task queue")
        described = await client.workflow_service.describe_task_queue(request)
        if any(p.identity.startswith(identity) for p in described.pollers):
            return
        if asyncio.get_running_loop().time() > deadline:
            log.warning("the worker does not poll task queue %r yet", task_queue)
            return
        await asyncio.sleep(0.1)
