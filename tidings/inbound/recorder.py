"""Group commit for interaction reports: concurrent reports share one transaction.

Each report must be committed before its 202, and a transaction per report caps the API at a
few hundred reports a second on SQLite (a handful of statements, each a round trip to
aiosqlite's thread, all behind SQLite's single writer lock). The recorder queues reports and
one writer task stores whatever has queued in a single transaction of a few statements, then
answers every waiting request. An idle API pays no delay: the first report wakes the writer
at once, and reports arriving while it writes form the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tidings.store.db import Database
from tidings.store.interactions import Recorded, Submitted, record_many
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

MAX_BATCH = 200  # keeps one insert's bound parameters well inside SQLite's limit


class InteractionRecorder:
    def __init__(self, db: Database, writer: asyncio.Lock | None = None) -> None:
        self._db = db
        # the API's own SQLite writer lock, so the recorder queues behind other writes in order
        self._writer = writer
        self._pending: list[tuple[Submitted, asyncio.Future[Recorded]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InteractionRecorder:
        self._task = asyncio.create_task(self._run(), name="tidings-interaction-recorder")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._pending:  # what was queued is still stored, answered or not
            await self._write_batch()

    async def record(self, item: Submitted) -> Recorded:
        """Store the report (committed when this returns) and say what became of it."""
        [recorded] = await self.record_all([item])
        return recorded

    async def record_all(self, items: list[Submitted]) -> list[Recorded]:
        """Store the reports (committed when this returns), answering each in order."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Recorded]] = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures, strict=True))
        self._wake.set()
        # shielded: a client that goes away does not take its reports out of a batch
        return list(await asyncio.shield(asyncio.gather(*futures)))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._write_batch()

    async def _write_batch(self) -> None:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        await self._write(batch)

    async def _write(self, batch: list[tuple[Submitted, asyncio.Future[Recorded]]]) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self._writer is not None:
                    await stack.enter_async_context(self._writer)
                session = await stack.enter_async_context(self._db.write())
                results = await record_many(session, [item for item, _ in batch], utcnow())
        except Exception as error:
            if len(batch) > 1:
                # one report must not fail the others: store each on its own
                for one in batch:
                    await self._write([one])
                return
            log.warning("an interaction report could not be stored: %s", type(error).__name__)
            _, future = batch[0]
            if not future.done():
                future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
