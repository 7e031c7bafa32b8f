"""A run as a status display shows it: live from the workflows while it runs, from the
store once it has ended."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from temporalio.client import Client
from temporalio.service import RPCError

from tidings.runs.errors import RunNotFound
from tidings.store.db import Database
from tidings.store.models import JourneyRun, RunStatus
from tidings.store.reports import Funnel, run_funnel
from tidings.store.triggers import trigger_of
from workflows.cohort import CohortWorkflow
from workflows.contracts import RunStatusView
from workflows.counts import Counts
from workflows.run import JourneyRunWorkflow


def funnel_summary(funnel: Funnel) -> dict[str, int]:
    """A triggered run's counts, from the store (it has no run workflow to total them)."""
    return {
        Counts.PROFILES: funnel.profiles_targeted,
        Counts.push_key("delivered"): funnel.delivered,
        Counts.PUSHES_SENT: funnel.pushes_sent,
        Counts.push_key("unknown"): funnel.unknown,
        Counts.INVALIDATED: funnel.tokens_invalidated,
    }


@dataclass
class RunView:
    """A run as a status display shows it: live from the workflows while it runs, from the
    store once it has ended."""

    run_id: str
    journey_id: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    kind: Literal["audience", "trigger"]
    # profiles standing on each node now (running cohorts)
    positions: dict[str, int] = field(default_factory=dict)
    # counts of finished cohorts plus the live counts of running ones
    counts: dict[str, Any] = field(default_factory=dict)
    cohorts_started: int = 0
    cohorts_running: int = 0
    # of the running cohorts, those parked in a long wait (they hold no place in the window)
    cohorts_waiting: int = 0
    audience_exhausted: bool = False
    cancelling: bool = False
    # an audience run still paging its audience and starting cohorts
    still_starting: bool = False


async def run_view(client: Client | None, db: Database, run_id: str) -> RunView:
    """Without a client, a running audience run shows what the store holds (no positions,
    no live counts): for a reader that has no Temporal to ask."""
    async with db.read() as session:
        run = await session.get(JourneyRun, run_id)
        trigger = await trigger_of(session, run_id)
        funnel = await run_funnel(session, run_id) if trigger is not None else None
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    view = RunView(
        run_id=run.id,
        journey_id=run.journey_id,
        status=str(run.status),
        started_at=run.started_at,
        finished_at=run.finished_at,
        kind="trigger" if trigger is not None else "audience",
        counts=dict(run.summary or {}),
        cohorts_started=int((run.summary or {}).get("cohorts", 0)),
    )
    if funnel is not None:
        view.counts = funnel_summary(funnel)
        # a triggered run whose activation stopped while it still runs: a cancel is waiting
        # for its entries to settle
        view.cancelling = (
            run.status == RunStatus.RUNNING and trigger is not None and not trigger.active
        )
        return view
    if run.status != RunStatus.RUNNING or client is None:
        return view
    try:
        status: RunStatusView = await client.get_workflow_handle_for(
            JourneyRunWorkflow.run, run_id
        ).query(JourneyRunWorkflow.status)
    except RPCError:
        return view  # it ended meanwhile, or no worker answers queries: the store's view
    totals: Counter[str] = Counter(status.totals)
    positions: Counter[str] = Counter()
    for cohort_id in status.running_cohorts:
        try:
            progress = await client.get_workflow_handle_for(CohortWorkflow.run, cohort_id).query(
                CohortWorkflow.progress
            )
        except RPCError:
            continue  # it ended between the two queries: the next refresh counts it
        totals.update(progress.counts)
        positions.update(progress.positions)
    view.counts = dict(totals)
    view.positions = dict(positions)
    view.cohorts_started = status.cohorts_started
    view.cohorts_running = len(status.running_cohorts)
    view.cohorts_waiting = len(status.parked_cohorts)
    view.audience_exhausted = status.audience_exhausted
    view.cancelling = status.cancelled
    view.still_starting = not status.audience_exhausted
    return view
