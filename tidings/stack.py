"""The embedded stack's composition: serving the API and running a worker inside one event
loop, and what a designer's command needs (a client and the store, with an in-process
worker when embedded)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from temporalio.client import Client

from tidings.settings import Settings
from tidings.store.db import Database
from tidings.temporal.client import configured_address, connect
from tidings.temporal.devserver import StackError, temporal_server
from tidings.worker.main import prepare_store
from tidings.worker.resources import build_worker, worker_resources


@contextlib.asynccontextmanager
async def serving_api(app: object, host: str, port: int) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn inside this event loop; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise StackError(f"the API could not listen on {host}:{port}")
        await asyncio.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def running(worker: Any) -> AsyncIterator[None]:
    """Run a Temporal worker in this event loop while the context lasts."""
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        await worker.shutdown()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def engine(settings: Settings) -> AsyncIterator[tuple[Client, Database]]:
    """A Temporal client and the store; in embedded mode also the dev server and a worker,
    so a run started from a laptop makes progress while the command waits."""
    prepare_store(settings)
    async with temporal_server(settings) as address:
        client = await connect(address)
        if configured_address() is not None:
            database = Database(settings.resolved_database_url)
            try:
                yield client, database
            finally:
                await database.dispose()
            return
        async with (
            worker_resources(settings) as resources,
            running(build_worker(client, settings, resources)),
        ):
            yield client, resources.db


@contextlib.asynccontextmanager
async def store_only(settings: Settings) -> AsyncIterator[Database]:
    prepare_store(settings)
    database = Database(settings.resolved_database_url)
    try:
        yield database
    finally:
        await database.dispose()
