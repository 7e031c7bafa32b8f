"""The interactions outbox forwarder (DESIGN.md decision 6).

The API commits every interaction before it answers; this forwarder, running beside each
worker, delivers the stored ones to the workflows that sent the pushes: one ``interactions``
signal per workflow per round, carrying all of its waiting events. Delivery is at least once:
a crash between the signal and marking the rows sends them again, and the cohort workflow
applies each event id once.

- PostgreSQL: a round claims its rows ``FOR UPDATE SKIP LOCKED`` inside one transaction,
  signals, marks them and commits, so forwarders in several workers take disjoint batches.
- SQLite: one writer at a time, so the round reads without locking (holding SQLite's write
  lock while Temporal answers would stall the API) and marks the rows afterwards; two
  forwarders on one SQLite file may both signal a row, which the workflows absorb.

While Temporal is unreachable the rows stay in the outbox (each attempt noted on the row) and
the forwarder backs off, up to ``max_backoff``; they go out once Temporal answers again. A
signal to a workflow that no longer runs (completed, or never existed) is not retried: the
rows are marked forwarded with a note, so the outbox drains. A row Temporal refuses for what
it is (an invalid argument, a payload it cannot take) backs off on its own, doubling from
``row_initial_backoff``, so it neither spins nor holds back newer rows; after
``max_failures`` refusals it is given up and kept, with the reason, for inspection
(``GET /v1/interactions?forwarding=failed``). Whatever else goes wrong in a round is logged
and the forwarder carries on: forwarding never stops while the worker runs.

A backend that holds its own Temporal client can skip the HTTP API with
:func:`record_and_signal`: it records the event exactly as the API does, signals the journey
at once, and leaves anything it could not signal to the forwarder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tidings.store.db import Database
from tidings.store.interactions import (
    InteractionReport,
    defer_forwarding,
    give_up_forwarding,
    mark_forwarded,
    note_forward_failure,
    record_interaction,
    unforwarded,
)
from tidings.store.models import Interaction, InteractionStatus
from tidings.store.types import utcnow
from tidings.tracebacks import describe, safe_traceback
from workflows.contracts import INTERACTIONS_SIGNAL, InteractionBatch, InteractionEvent

log = logging.getLogger(__name__)

# Temporal answers these while it is down or overloaded: wait and try again.
TRANSIENT = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.ABORTED,
    RPCStatusCode.CANCELLED,
    RPCStatusCode.INTERNAL,
    RPCStatusCode.UNKNOWN,
}


@dataclass(frozen=True)
class ForwarderOptions:
    batch_size: int = 1000  # rows per round
    max_events_per_signal: int = 500  # keeps each signal far below Temporal's payload limit
    concurrent_signals: int = 32
    # how often an idle forwarder looks for new rows: events arriving meanwhile share one
    # signal per workflow, so a longer interval costs Temporal fewer history events
    idle_interval: timedelta = timedelta(milliseconds=500)
    initial_backoff: timedelta = timedelta(milliseconds=500)
    max_backoff: timedelta = timedelta(seconds=15)
    signal_timeout: timedelta = timedelta(seconds=10)
    # a row Temporal refuses waits row_initial_backoff, doubling up to row_max_backoff, and
    # is given up after max_failures refusals (about 40 minutes of trying by default)
    row_initial_backoff: timedelta = timedelta(seconds=5)
    row_max_backoff: timedelta = timedelta(hours=1)
    max_failures: int = 10

    def row_backoff(self, failures: int) -> timedelta:
        """How long a row waits after its ``failures``-th refusal."""
        doubled: timedelta = self.row_initial_backoff * (2 ** min(max(failures - 1, 0), 30))
        return min(doubled, self.row_max_backoff)


@dataclass
class Round:
    """What one round did."""

    claimed: int = 0
    forwarded: int = 0
    gone: int = 0  # rows for workflows that no longer run: marked, with a note
    failed: int = 0  # rows left in the outbox for a later round (or given up, below)
    given_up: int = 0  # rows refused max_failures times: kept for inspection, not retried
    outage: bool = False  # Temporal was unreachable
    errors: list[str] = field(default_factory=list)


def event_of(row: Interaction) -> InteractionEvent:
    """The signal's event for a stored interaction. It names the visit of the ledger row it
    is about (kept in the row's details when it was recorded), so a late open of an earlier
    send of a node the profile passed again is not taken for the latest send's."""
    visit = (row.details or {}).get("visit")
    return InteractionEvent(
        event_id=row.event_id,
        profile_id=row.profile_id or "",
        kind=row.kind,
        occurred_at=row.occurred_at,
        node_id=row.node_id,
        tracking_id=row.tracking_id,
        action_id=row.action_id,
        visit=visit if isinstance(visit, int) and not isinstance(visit, bool) else None,
    )


@dataclass
class _Delivery:
    """The outcome of signalling one workflow with some rows."""

    rows: list[int]
    error: Exception | None = None

    @property
    def gone(self) -> bool:
        return isinstance(self.error, RPCError) and self.error.status == RPCStatusCode.NOT_FOUND

    @property
    def transient(self) -> bool:
        """Temporal is down or overloaded: no fault of these rows."""
        return isinstance(self.error, RPCError) and self.error.status in TRANSIENT

    @property
    def reason(self) -> str:
        if isinstance(self.error, RPCError):
            return f"{self.error.status.name}: {self.error.message}"
        if self.error is None:
            return ""
        return f"{type(self.error).__name__}: {self.error}"


class Forwarder:
    def __init__(
        self, client: Client, db: Database, options: ForwarderOptions | None = None
    ) -> None:
        self.client = client
        self.db = db
        self.options = options or ForwarderOptions()
        self._signals = asyncio.Semaphore(self.options.concurrent_signals)

    async def run(self, stop: asyncio.Event) -> None:
        """Forward until ``stop`` is set, whatever fails in between."""
        options = self.options
        backoff = options.initial_backoff.total_seconds()
        while not stop.is_set():
            try:
                done = await self.forward_once()
            except (SQLAlchemyError, OSError) as error:
                log.warning("interaction forwarder: the store failed (%s)", describe(error))
                done = Round(outage=True)
            except Exception as error:
                # a bug or a surprise must not end forwarding for the life of the worker
                log.error(
                    "interaction forwarder: a round failed (%s); trying again\n%s",
                    describe(error),
                    safe_traceback(error),
                )
                done = Round(outage=True)
            if done.outage:
                delay = backoff * (0.5 + random.random())
                backoff = min(backoff * 2, options.max_backoff.total_seconds())
                await _wait(stop, delay)
                continue
            backoff = options.initial_backoff.total_seconds()
            if done.claimed < options.batch_size:
                await _wait(stop, options.idle_interval.total_seconds())

    async def forward_once(self) -> Round:
        """One round: claim a batch, signal its workflows, record the outcome."""
        if self.db.is_sqlite:
            async with self.db.read() as session:
                rows = await unforwarded(session, self.options.batch_size, lock=False)
            if not rows:
                return Round()
            deliveries = await self._signal_all(rows)
            async with self.db.write() as session:
                return await self._record(session, rows, deliveries)
        async with self.db.write() as session:
            rows = await unforwarded(session, self.options.batch_size, lock=True)
            if not rows:
                return Round()
            deliveries = await self._signal_all(rows)
            return await self._record(session, rows, deliveries)

    async def _signal_all(self, rows: Sequence[Interaction]) -> list[_Delivery]:
        by_workflow: dict[str, list[Interaction]] = defaultdict(list)
        for row in rows:
            by_workflow[row.workflow_id or ""].append(row)
        size = self.options.max_events_per_signal
        jobs = [
            self._signal(workflow_id, group[start : start + size])
            for workflow_id, group in by_workflow.items()
            for start in range(0, len(group), size)
        ]
        return [delivery for deliveries in await asyncio.gather(*jobs) for delivery in deliveries]

    async def _signal(self, workflow_id: str, rows: list[Interaction]) -> list[_Delivery]:
        """Signal the workflow with the rows; if Temporal refuses a group for what it holds,
        each row is tried on its own, so one bad row does not take its neighbours down."""
        delivery = await self._signal_group(workflow_id, rows)
        if delivery.error is None or delivery.gone or delivery.transient or len(rows) == 1:
            return [delivery]
        return list(await asyncio.gather(*(self._signal_group(workflow_id, [r]) for r in rows)))

    async def _signal_group(self, workflow_id: str, rows: list[Interaction]) -> _Delivery:
        ids = [int(row.id or 0) for row in rows]
        async with self._signals:
            try:
                batch = InteractionBatch([event_of(row) for row in rows])
                await self.client.get_workflow_handle(workflow_id).signal(
                    INTERACTIONS_SIGNAL, batch, rpc_timeout=self.options.signal_timeout
                )
            except Exception as error:  # recorded on the rows; classified by _Delivery
                return _Delivery(ids, error)
        return _Delivery(ids)

    async def _record(
        self, session: AsyncSession, rows: Sequence[Interaction], deliveries: list[_Delivery]
    ) -> Round:
        now = utcnow()
        done = Round(claimed=len(rows))
        failures = {int(row.id or 0): row.forward_failures for row in rows}
        delivered = [i for d in deliveries if d.error is None for i in d.rows]
        await mark_forwarded(session, delivered, now)
        done.forwarded = len(delivered)
        for delivery in deliveries:
            if delivery.error is None:
                continue
            if delivery.gone:
                await mark_forwarded(
                    session,
                    delivery.rows,
                    now,
                    note=f"not applied: the workflow no longer runs ({delivery.reason})",
                )
                done.gone += len(delivery.rows)
                continue
            done.failed += len(delivery.rows)
            done.errors.append(delivery.reason)
            if delivery.transient:
                done.outage = True
                await note_forward_failure(session, delivery.rows, delivery.reason)
                continue
            done.given_up += await self._refused(session, delivery, failures, now)
        if done.failed:
            log.warning(
                "interaction forwarder: %s of %s events not delivered yet, %s given up (%s)",
                done.failed,
                done.claimed,
                done.given_up,
                done.errors[0],
            )
        return done

    async def _refused(
        self,
        session: AsyncSession,
        delivery: _Delivery,
        failures: dict[int, int],
        now: datetime,
    ) -> int:
        """Back each refused row off by its own count of refusals, or give it up; returns
        how many were given up."""
        by_count: dict[int, list[int]] = defaultdict(list)
        for row_id in delivery.rows:
            by_count[failures.get(row_id, 0) + 1].append(row_id)
        given_up = 0
        for count, ids in sorted(by_count.items()):
            if count >= self.options.max_failures:
                await give_up_forwarding(session, ids, delivery.reason, now)
                given_up += len(ids)
            else:
                retry_at = now + self.options.row_backoff(count)
                await defer_forwarding(session, ids, delivery.reason, retry_at)
        return given_up


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


@contextlib.asynccontextmanager
async def forwarding(
    client: Client, db: Database, options: ForwarderOptions | None = None
) -> AsyncIterator[Forwarder]:
    """Run a forwarder in this event loop while the context lasts (beside a worker)."""
    forwarder = Forwarder(client, db, options)
    stop = asyncio.Event()
    task = asyncio.create_task(forwarder.run(stop), name="tidings-interaction-forwarder")
    try:
        yield forwarder
    finally:
        stop.set()
        await task


async def record_and_signal(client: Client, db: Database, report: InteractionReport) -> Interaction:
    """Record an interaction as the API does, then signal its journey right away.

    For a backend that holds its own Temporal client (and the store's URL): the event is in
    the store whatever happens next, and if the signal fails (Temporal down, a timeout) the
    forwarder delivers it later. Returns the stored row; an unknown tracking id is stored as
    ``unmatched`` and signals nothing. Raises :class:`~tidings.store.interactions.EventIdReused`
    (nothing stored) when the event id was used before for another report of the app.
    """
    now = utcnow()
    async with db.write() as session:
        row, _ = await record_interaction(session, report, now)
    if (
        InteractionStatus(row.status) is not InteractionStatus.MATCHED
        or row.forwarded_at
        or row.forward_failed_at
    ):
        return row
    forwarder = Forwarder(client, db)
    deliveries = await forwarder._signal_all([row])
    if deliveries[0].error is None or deliveries[0].gone:
        async with db.write() as session:
            await forwarder._record(session, [row], deliveries)
            refreshed = await session.get(Interaction, row.id, populate_existing=True)
        return refreshed or row
    return row
