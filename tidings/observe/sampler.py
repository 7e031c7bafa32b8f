"""Gauges of work in progress, sampled from the store (and Temporal) every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from temporalio.client import Client

from tidings.observe.metrics import (
    COHORTS_IN_FLIGHT,
    FORWARDER_BACKLOG,
    FORWARDER_LAG,
    LEDGER_OPEN_ROWS,
    RUNS_IN_FLIGHT,
)
from tidings.store.db import Database
from tidings.store.gauges import Backlog, work_in_progress
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

SAMPLE_EVERY_S = 10.0
COHORT_QUERY = "WorkflowType='JourneyCohort' AND ExecutionStatus='Running'"


def _set_backlog(kind: str, backlog: Backlog) -> None:
    FORWARDER_BACKLOG.labels(kind).set(backlog.waiting)
    lag = (utcnow() - backlog.oldest).total_seconds() if backlog.oldest is not None else 0.0
    FORWARDER_LAG.labels(kind).set(max(0.0, lag))


async def sample_once(db: Database, client: Client | None) -> None:
    async with db.read() as session:
        progress = await work_in_progress(session)
    LEDGER_OPEN_ROWS.set(progress.open_ledger_rows)
    RUNS_IN_FLIGHT.set(progress.runs_in_flight)
    _set_backlog("interactions", progress.interactions)
    _set_backlog("custom_events", progress.custom_events)
    _set_backlog("webhooks", progress.webhooks)
    if client is not None:
        cohorts = await client.count_workflows(COHORT_QUERY)
        COHORTS_IN_FLIGHT.set(cohorts.count)


async def _sample_forever(db: Database, client: Client | None, every_s: float) -> None:
    while True:
        try:
            await sample_once(db, client)
        except Exception as error:  # a store or Temporal hiccup: the next sample will tell
            log.debug("sampling metrics failed: %s", type(error).__name__)
        await asyncio.sleep(every_s)


@contextlib.asynccontextmanager
async def sampling(
    db: Database, client: Client | None, every_s: float = SAMPLE_EVERY_S
) -> AsyncIterator[None]:
    task = asyncio.create_task(_sample_forever(db, client, every_s))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
