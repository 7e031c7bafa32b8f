"""The one forwarder of outside events into journeys (DESIGN.md decision 6).

The API commits every interaction and every custom event before it answers; this forwarder,
running beside each worker, drains both outboxes. A round claims a batch of each, starts the
triggered entries the custom events ask for (signal-with-start, :mod:`tidings.inbound.triggers`),
then sends one ``interactions`` signal per workflow carrying all of its waiting events, both
kinds together: the interactions for the pushes it sent and the custom events it listens for.
Delivery is at least once: a crash between the signal and marking the rows sends them again,
and the cohort workflow applies each event id once; an entry already started is found by the
re-entry policy (or its signal-with-start signals the running entry), never started twice.

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
(``GET /v1/interactions?forwarding=failed``, ``GET /v1/events?forwarding=failed``), until
ops requeue it. A custom event is forwarded when all it asks is done: a start or a signal of
it that fails leaves the whole event for a later round (what it did start is recorded, so the
re-entry policy sees it), and later events of the same profile wait behind it. Whatever
else goes wrong in a round is logged and the forwarder carries on: forwarding never stops
while the worker runs.

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
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from tidings.inbound.triggers import EntryOptions, EntryStarter, EventPlan, signal_event
from tidings.store import custom_events
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
from tidings.store.models import CustomEvent, Interaction, InteractionStatus
from tidings.store.triggers import record_entry
from tidings.store.types import utcnow
from tidings.temporal.client import traced
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
    batch_size: int = 1000  # custom events per round
    # interactions per round: several seconds' worth at the busiest (see busy_interval)
    interaction_batch_size: int = 10_000
    max_events_per_signal: int = 500  # keeps each signal far below Temporal's payload limit
    concurrent_signals: int = 32
    # how often an idle forwarder looks for new rows: events arriving meanwhile share one
    # signal per workflow, so a longer interval costs Temporal fewer history events
    idle_interval: timedelta = timedelta(milliseconds=500)
    # under load (a round took busy_rows interactions or more) the next round of interactions
    # waits longer: a workflow's signal then carries seconds' worth of its events instead of
    # a few, and each signal costs its workflow about four history events and a workflow
    # task (at 2,000 interactions/s over 62 cohorts: 0.4 events an interaction at 0.5 s,
    # under 0.05 at 3 s). A journey hears of an open at most this much later.
    busy_rows: int = 500
    busy_interval: timedelta = timedelta(seconds=3)
    # custom events are looked for more often: a triggered entry is a workflow of its own,
    # so waiting gains no batching, only latency (the look costs one indexed query)
    event_interval: timedelta = timedelta(milliseconds=100)
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
    """What one round did, counting rows of both outboxes."""

    claimed: int = 0
    forwarded: int = 0
    gone: int = 0  # rows for workflows that no longer run: marked, with a note
    failed: int = 0  # rows left in the outbox for a later round (or given up, below)
    given_up: int = 0  # rows refused max_failures times: kept for inspection, not retried
    outage: bool = False  # Temporal was unreachable
    full: bool = False  # an outbox had more due rows than one round takes
    interactions: int = 0  # interaction rows claimed
    errors: list[str] = field(default_factory=list)


def pause_after(done: Round, options: ForwarderOptions) -> float:
    """Seconds until the next round of interactions: none while an outbox has a backlog,
    longer under load (so signals carry more events each), else the idle interval."""
    if done.full:
        return 0.0
    if done.interactions >= options.busy_rows:
        return options.busy_interval.total_seconds()
    return options.idle_interval.total_seconds()


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


@dataclass(frozen=True)
class _Item:
    """One event bound for one workflow: a stored interaction, or a custom event's signal to
    one of its targets."""

    workflow_id: str
    event: InteractionEvent
    interaction: int | None = None  # the interaction's row id
    custom_event: int | None = None  # the custom event's row id


def _is_transient(error: Exception | None) -> bool:
    """Temporal is down or overloaded: no fault of the rows."""
    return isinstance(error, RPCError) and error.status in TRANSIENT


def _reason(error: Exception | None) -> str:
    if isinstance(error, RPCError):
        return f"{error.status.name}: {error.message}"
    if error is None:
        return ""
    return f"{type(error).__name__}: {error}"


@dataclass
class _Delivery:
    """The outcome of signalling one workflow with some items."""

    items: list[_Item]
    error: Exception | None = None

    @property
    def rows(self) -> list[int]:
        return [i.interaction for i in self.items if i.interaction is not None]

    @property
    def gone(self) -> bool:
        return isinstance(self.error, RPCError) and self.error.status == RPCStatusCode.NOT_FOUND

    @property
    def transient(self) -> bool:
        return _is_transient(self.error)

    @property
    def reason(self) -> str:
        return _reason(self.error)


class Forwarder:
    def __init__(
        self,
        client: Client,
        db: Database,
        options: ForwarderOptions | None = None,
        entries: EntryOptions | None = None,
    ) -> None:
        self.client = client
        self.db = db
        self.options = options or ForwarderOptions()
        self._signals = asyncio.Semaphore(self.options.concurrent_signals)
        # without entry options (a backend's record_and_signal) custom events are left alone
        self._entries = EntryStarter(client, db, entries) if entries is not None else None

    async def run(self, stop: asyncio.Event) -> None:
        """Forward until ``stop`` is set, whatever fails in between."""
        options = self.options
        backoff = options.initial_backoff.total_seconds()
        loop = asyncio.get_running_loop()
        interactions_due = loop.time()
        while not stop.is_set():
            with_interactions = self._entries is None or loop.time() >= interactions_due
            try:
                done = await self.forward_once(interactions=with_interactions)
            except (SQLAlchemyError, OSError) as error:
                log.warning("forwarder: the store failed (%s)", describe(error))
                done = Round(outage=True)
            except Exception as error:
                # a bug or a surprise must not end forwarding for the life of the worker
                log.error(
                    "forwarder: a round failed (%s); trying again\n%s",
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
            if with_interactions:
                interactions_due = loop.time() + pause_after(done, options)
            if not done.full:
                interval = (
                    max(interactions_due - loop.time(), 0.0)
                    if self._entries is None
                    else min(options.idle_interval, options.event_interval).total_seconds()
                )
                await _wait(stop, interval)

    async def forward_once(self, *, interactions: bool = True) -> Round:
        """One round: claim a batch of each outbox (of custom events alone, without
        ``interactions``), start and signal, record the outcome."""
        size = self.options.interaction_batch_size
        if self.db.is_sqlite:
            async with self.db.read() as session:
                rows = await unforwarded(session, size, lock=False) if interactions else []
                events = await self._due_events(session, lock=False)
            if not rows and not events:
                return Round()
            plans, deliveries = await self._deliver(rows, events)
            async with self.db.write() as session:
                return await self._record(session, rows, events, plans, deliveries)
        async with self.db.write() as session:
            rows = await unforwarded(session, size, lock=True) if interactions else []
            events = await self._due_events(session, lock=True)
            if not rows and not events:
                return Round()
            plans, deliveries = await self._deliver(rows, events)
            return await self._record(session, rows, events, plans, deliveries)

    async def _due_events(self, session: AsyncSession, *, lock: bool) -> list[CustomEvent]:
        if self._entries is None:
            return []
        return await custom_events.unforwarded(session, self.options.batch_size, lock=lock)

    async def _deliver(
        self, rows: Sequence[Interaction], events: Sequence[CustomEvent]
    ) -> tuple[dict[int, EventPlan], list[_Delivery]]:
        plans: dict[int, EventPlan] = {}
        if self._entries is not None and events:
            plans = await self._entries.plan(events, self._signals)
        items = [
            _Item(row.workflow_id or "", event_of(row), interaction=int(row.id or 0))
            for row in rows
        ]
        for event in events:
            plan = plans[int(event.id or 0)]
            if plan.error is None and not plan.held:
                signal = signal_event(event)
                items += [_Item(w, signal, custom_event=int(event.id or 0)) for w in plan.targets]
        return plans, await self._signal_all(items)

    async def _signal_all(self, items: Sequence[_Item]) -> list[_Delivery]:
        by_workflow: dict[str, list[_Item]] = defaultdict(list)
        for item in items:
            by_workflow[item.workflow_id].append(item)
        size = self.options.max_events_per_signal
        jobs = [
            self._signal(workflow_id, group[start : start + size])
            for workflow_id, group in by_workflow.items()
            for start in range(0, len(group), size)
        ]
        return [delivery for deliveries in await asyncio.gather(*jobs) for delivery in deliveries]

    async def _signal(self, workflow_id: str, items: list[_Item]) -> list[_Delivery]:
        """Signal the workflow with the items; if Temporal refuses a group for what it holds,
        each item is tried on its own, so one bad row does not take its neighbours down."""
        delivery = await self._signal_group(workflow_id, items)
        if delivery.error is None or delivery.gone or delivery.transient or len(items) == 1:
            return [delivery]
        return list(await asyncio.gather(*(self._signal_group(workflow_id, [i]) for i in items)))

    async def _signal_group(self, workflow_id: str, items: list[_Item]) -> _Delivery:
        async with self._signals:
            try:
                batch = InteractionBatch([item.event for item in items])
                await self.client.get_workflow_handle(workflow_id).signal(
                    INTERACTIONS_SIGNAL, batch, rpc_timeout=self.options.signal_timeout
                )
            except Exception as error:  # recorded on the rows; classified by _Delivery
                return _Delivery(items, error)
        return _Delivery(items)

    async def _record(
        self,
        session: AsyncSession,
        rows: Sequence[Interaction],
        events: Sequence[CustomEvent],
        plans: dict[int, EventPlan],
        deliveries: list[_Delivery],
    ) -> Round:
        now = utcnow()
        options = self.options
        done = Round(
            claimed=len(rows) + len(events),
            full=len(rows) == options.interaction_batch_size or len(events) == options.batch_size,
            interactions=len(rows),
        )
        failures = {int(row.id or 0): row.forward_failures for row in rows}
        delivered = [i for d in deliveries if d.error is None for i in d.rows]
        await mark_forwarded(session, delivered, now)
        done.forwarded = len(delivered)
        for delivery in deliveries:
            if delivery.error is None or not delivery.rows:
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
            given_up = await self._refused(
                session, Interaction, delivery.rows, delivery.reason, failures, now
            )
            done.given_up += given_up
        if events:
            await self._record_events(session, events, plans, deliveries, done, now)
        if done.failed:
            log.warning(
                "forwarder: %s of %s events not delivered yet, %s given up (%s)",
                done.failed,
                done.claimed,
                done.given_up,
                done.errors[0],
            )
        return done

    async def _record_events(
        self,
        session: AsyncSession,
        events: Sequence[CustomEvent],
        plans: dict[int, EventPlan],
        deliveries: list[_Delivery],
        done: Round,
        now: datetime,
    ) -> None:
        """Each custom event is forwarded once its starts and all its signals went through
        (a signal to a workflow that no longer runs counts as through, with a note)."""
        signalled: dict[int, list[str]] = defaultdict(list)
        errors: dict[int, list[Exception]] = defaultdict(list)
        notes: dict[int, str] = {}
        for delivery in deliveries:
            for item in delivery.items:
                if item.custom_event is None:
                    continue
                if delivery.error is None:
                    signalled[item.custom_event].append(item.workflow_id)
                elif delivery.gone:
                    notes[item.custom_event] = f"not applied: {item.workflow_id} no longer runs"
                else:
                    errors[item.custom_event].append(delivery.error)
        outcomes: dict[int, dict[str, Any]] = {}
        transient: dict[str, list[int]] = defaultdict(list)
        refused: dict[str, list[int]] = defaultdict(list)
        for event in events:
            row_id = int(event.id or 0)
            plan = plans[row_id]
            for entry in plan.entries:  # whatever else failed, these entries started
                await record_entry(session, entry)
            if plan.held:
                continue
            failed = ([plan.error] if plan.error is not None else []) + errors[row_id]
            if not failed:
                outcomes[row_id] = {
                    "started": plan.started,
                    "signalled": sorted(signalled[row_id]),
                    "skipped": plan.skipped,
                }
                continue
            done.failed += 1
            done.errors.append(_reason(failed[0]))
            outage = [error for error in failed if _is_transient(error)]
            if outage:
                transient[_reason(outage[0])].append(row_id)
            else:
                refused[_reason(failed[0])].append(row_id)
        await custom_events.mark_forwarded(session, outcomes, now, notes)
        done.forwarded += len(outcomes)
        for reason, ids in transient.items():
            done.outage = True
            await custom_events.note_forward_failure(session, ids, reason)
        failures = {int(event.id or 0): event.forward_failures for event in events}
        for reason, ids in refused.items():
            done.given_up += await self._refused(session, CustomEvent, ids, reason, failures, now)

    async def _refused(
        self,
        session: AsyncSession,
        table: type[Interaction] | type[CustomEvent],
        ids: list[int],
        reason: str,
        failures: dict[int, int],
        now: datetime,
    ) -> int:
        """Back each refused row off by its own count of refusals, or give it up; returns
        how many were given up."""
        by_count: dict[int, list[int]] = defaultdict(list)
        for row_id in ids:
            by_count[failures.get(row_id, 0) + 1].append(row_id)
        defer = defer_forwarding if table is Interaction else custom_events.defer_forwarding
        give_up = give_up_forwarding if table is Interaction else custom_events.give_up_forwarding
        given_up = 0
        for count, chosen in sorted(by_count.items()):
            if count >= self.options.max_failures:
                await give_up(session, chosen, reason, now)
                given_up += len(chosen)
            else:
                await defer(session, chosen, reason, now + self.options.row_backoff(count))
        return given_up


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


@contextlib.asynccontextmanager
async def forwarding(
    client: Client,
    db: Database,
    options: ForwarderOptions | None = None,
    entries: EntryOptions | None = None,
) -> AsyncIterator[Forwarder]:
    """Run a forwarder in this event loop while the context lasts (beside a worker, whose
    task queue and engine options ``entries`` gives triggered entries)."""
    forwarder = Forwarder(traced(client), db, options, entries)
    stop = asyncio.Event()
    task = asyncio.create_task(forwarder.run(stop), name="tidings-forwarder")
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
    item = _Item(row.workflow_id or "", event_of(row), interaction=int(row.id or 0))
    deliveries = await forwarder._signal_all([item])
    if deliveries[0].error is None or deliveries[0].gone:
        async with db.write() as session:
            await forwarder._record(session, [row], [], {}, deliveries)
            refreshed = await session.get(Interaction, row.id, populate_existing=True)
        return refreshed or row
    return row
