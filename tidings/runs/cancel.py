"""Cancelling a run: its workflows stop taking steps and let the sends in flight settle."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from tidings.runs.errors import RunNotFound
from tidings.runs.view import funnel_summary
from tidings.store.db import Database
from tidings.store.journeys import (
    finish_run,
)
from tidings.store.models import JourneyRun, RunStatus
from tidings.store.reports import run_funnel
from tidings.store.triggers import deactivate, entry_workflows, trigger_of
from tidings.store.types import utcnow
from workflows.contracts import CANCEL_SIGNAL

# Entry workflows a triggered cancel signals and waits for at once.
CANCEL_CONCURRENCY = 32


@dataclass
class CancelOutcome:
    run_id: str
    # cohorts asked to stop (for an audience run, its run workflow passes the word on)
    cohorts_signalled: int = 0
    already_finished: bool = False


async def cancel_run(client: Client, db: Database, run_id: str) -> CancelOutcome:
    """Stop a run taking steps: no new sends start, the ones in flight settle, and the run
    records itself as cancelled with its counts.

    An audience run's workflow does this itself once signalled. A triggered run has no
    workflow of its own: its activation stops taking entries, each running entry is asked to
    stop, and this call waits until every one of them has closed (its sends settled) before
    it writes the run's funnel, so the funnel counts what those sends did. Interrupted, it
    may be called again: the run stays running until a call completes."""
    async with db.read() as session:
        run = await session.get(JourneyRun, run_id)
        trigger = await trigger_of(session, run_id)
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    if run.status != RunStatus.RUNNING:
        return CancelOutcome(run_id, already_finished=True)
    if trigger is None:
        await client.get_workflow_handle(run_id).signal(CANCEL_SIGNAL)
        return CancelOutcome(run_id, cohorts_signalled=0)
    async with db.write() as session:
        await deactivate(session, run_id, utcnow())
    signalled = await _stop_entries(client, db, run_id)
    async with db.write() as session:
        funnel = await run_funnel(session, run_id)
        await finish_run(session, run_id, RunStatus.CANCELLED.value, funnel_summary(funnel))
    return CancelOutcome(run_id, cohorts_signalled=signalled)


async def _stop_entries(client: Client, db: Database, run_id: str) -> int:
    """Signal every running entry of a triggered run to stop and wait until each has closed;
    return how many were running. The entries are read again afterwards: an event forwarded
    while the activation was being stopped may have started one more."""
    done: set[str] = set()
    gate = asyncio.Semaphore(CANCEL_CONCURRENCY)

    async def stop(workflow_id: str) -> bool:
        async with gate:
            return await _stop_entry(client, workflow_id)

    signalled = 0
    while True:
        async with db.read() as session:
            todo = [w for w in await entry_workflows(session, run_id) if w not in done]
        if not todo:
            return signalled
        done.update(todo)
        signalled += sum(await asyncio.gather(*(stop(w) for w in todo)))


async def _stop_entry(client: Client, workflow_id: str) -> bool:
    """Ask one entry to stop, then wait for it to close (through continue-as-new); False if
    it was not running."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        await handle.signal(CANCEL_SIGNAL)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    try:
        await handle.result()
    except WorkflowFailureError:
        pass  # it failed while settling: it has closed all the same, its rows say what it did
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
    return True
