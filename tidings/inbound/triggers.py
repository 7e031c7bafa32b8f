"""What a stored custom event asks of the journeys, worked out by the forwarder.

- A journey activated with a trigger on the event's name starts for the event's profile: a
  cohort of one, started by signal-with-start (the event is its first signal), with a
  workflow id derived from journey and profile, so a profile never runs it twice at once. The
  re-entry policy decides whether a profile that entered before may enter again.
- A running journey the profile is in that listens for the event (its goal, a wait_for) is a
  *target*: the forwarder signals it the event (kind ``custom``) in its batched
  ``interactions`` signals, beside the interactions bound for the same workflow; cohorts
  apply each event id once.

A profile's events are taken in the order they arrived, so an entry one event starts is seen
by the next; different profiles' events go concurrently.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import ProfileFacts
from tidings.journeys.model import JourneyDefinition
from tidings.observe.tracing import continued
from tidings.runs.options import engine_options
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.journey_events import running_entries
from tidings.store.models import CustomEvent, JourneyRun, Profile
from tidings.store.triggers import NewEntry, active_triggers, entries_of_profiles, prior_visits
from tidings.store.types import utcnow
from tidings.temporal.search import start_options
from workflows.cohort import CohortWorkflow
from workflows.contracts import (
    INTERACTIONS_SIGNAL,
    CohortInput,
    EngineOptions,
    InteractionBatch,
    InteractionEvent,
)


def entry_workflow_id(journey_id: str, profile_id: str) -> str:
    """The cohort of one that runs a triggered journey for one profile."""
    return f"journey/{journey_id}/profile/{profile_id}"


def signal_event(event: CustomEvent) -> InteractionEvent:
    """The event as the cohorts read it (an event id of its own beside interactions')."""
    return InteractionEvent(
        event_id=f"event:{event.event_id}",
        profile_id=event.profile_id,
        kind="custom",
        occurred_at=event.occurred_at,
        name=event.name,
    )


@dataclass(frozen=True)
class EntryOptions:
    """Where triggered entries run: their own task queue, which every interpreter worker
    polls beside the interpreter's, and engine options."""

    task_queue: str
    engine: EngineOptions

    @classmethod
    def of(cls, settings: Settings) -> EntryOptions:
        return cls(settings.triggered_queue, engine_options(settings))


@dataclass
class EventPlan:
    """What forwarding one event did and has still to do."""

    started: list[str] = field(default_factory=list)  # journeys it started for the profile
    entries: list[NewEntry] = field(default_factory=list)  # the entries those starts made
    skipped: dict[str, str] = field(default_factory=dict)  # journey -> why it did not start
    targets: list[str] = field(default_factory=list)  # running workflows to signal it to
    error: Exception | None = None  # a start Temporal refused, or could not take
    held: bool = False  # an earlier event of its profile failed: left for a later round


@dataclass
class _Known:
    """A profile's entries and listening runs as this round sees them."""

    profile: Profile | None
    # journey id -> (run id, workflow id, last entered at)
    entries: dict[str, tuple[str, str, datetime]]
    listening: list[tuple[str, JourneyRun]]


class EntryStarter:
    def __init__(self, client: Client, db: Database, options: EntryOptions) -> None:
        self._client = client
        self._db = db
        self._options = options
        # run id -> definition snapshot (immutable, so cached for the process's life)
        self._snapshots: dict[str, JourneyDefinition] = {}

    async def plan(
        self, events: Sequence[CustomEvent], concurrency: asyncio.Semaphore
    ) -> dict[int, EventPlan]:
        """Start the entries the events trigger, and say whom each must be signalled to
        (by row id)."""
        if not events:
            return {}
        by_profile: dict[str, list[CustomEvent]] = defaultdict(list)
        for event in events:
            by_profile[event.profile_id].append(event)
        async with self._db.read() as session:
            triggers = {
                name: await active_triggers(session, name) for name in {e.name for e in events}
            }
            known = await self._known(session, list(by_profile))
        plans: dict[int, EventPlan] = {}

        async def one_profile(profile_id: str) -> None:
            failed = False
            for event in by_profile[profile_id]:
                plan = plans[int(event.id or 0)] = EventPlan()
                if failed:
                    plan.held = True
                    continue
                async with concurrency:
                    await self._plan_event(event, triggers[event.name], known[profile_id], plan)
                failed = plan.error is not None

        await asyncio.gather(*(one_profile(p) for p in by_profile))
        return plans

    async def _known(self, session: AsyncSession, profile_ids: list[str]) -> dict[str, _Known]:
        """What the round must know of each of its profiles: three queries for all of
        them, not three a profile."""
        entries = await entries_of_profiles(session, profile_ids)
        listening = await running_entries(session, profile_ids)
        profiles = {
            profile.id: profile
            for profile in (
                await session.exec(select(Profile).where(col(Profile.id).in_(profile_ids)))
            ).all()
        }
        known: dict[str, _Known] = {}
        for profile_id in profile_ids:
            mine = {}
            for entry in entries[profile_id]:
                mine[entry.journey_id] = (entry.run_id, entry.workflow_id, entry.last_entered_at)
                await self._snapshot(session, entry.run_id)
            known[profile_id] = _Known(profiles.get(profile_id), mine, listening[profile_id])
        return known

    async def _plan_event(
        self, event: CustomEvent, triggers: list[JourneyRun], known: _Known, plan: EventPlan
    ) -> None:
        now = utcnow()
        batch = InteractionBatch([signal_event(event)])
        for run in triggers:
            journey = self._remember(run)
            workflow_id = entry_workflow_id(journey.id, event.profile_id)
            previous = known.entries.get(journey.id)
            try:
                reason = await self._may_not_enter(journey, previous, workflow_id, now)
                if reason:
                    plan.skipped[journey.id] = reason
                    continue
                # the start joins the trace of the request that posted the event
                with continued(event.traceparent):
                    await self._start(
                        event, run, journey, known.profile, workflow_id, batch, previous
                    )
            except Exception as error:  # recorded on the event; classified by the forwarder
                plan.error = error
                return
            plan.entries.append(NewEntry(journey.id, event.profile_id, run.id, workflow_id, now))
            plan.started.append(journey.id)
            known.entries[journey.id] = (run.id, workflow_id, now)
        targets: set[str] = set()
        for run_id, workflow_id, _ in known.entries.values():
            snapshot = self._snapshots.get(run_id)
            if snapshot is not None and event.name in snapshot.listened_events():
                targets.add(workflow_id)
        for workflow_id, listening in known.listening:
            if event.name in (listening.entry or {}).get("listens", []):
                targets.add(workflow_id)
        targets -= {entry_workflow_id(j, event.profile_id) for j in plan.started}
        plan.targets = sorted(targets)

    async def _start(
        self,
        event: CustomEvent,
        run: JourneyRun,
        journey: JourneyDefinition,
        profile: Profile | None,
        workflow_id: str,
        batch: InteractionBatch,
        previous: tuple[str, str, datetime] | None,
    ) -> None:
        visits: dict[str, int] = {}
        if previous is not None:
            async with self._db.read() as session:
                visits = await prior_visits(session, workflow_id)
        await self._client.start_workflow(
            CohortWorkflow.run,
            CohortInput(
                run_id=run.id,
                journey=journey,
                profile_ids=[event.profile_id],
                options=self._options.engine,
                facts={event.profile_id: _facts(profile, journey)},
                triggered=True,
                prior_visits=visits,
                local_delivery=True,
            ),
            id=workflow_id,
            task_queue=self._options.task_queue,
            start_signal=INTERACTIONS_SIGNAL,
            start_signal_args=[batch],
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            **await start_options(
                self._client,
                journey_id=journey.id,
                journey_name=journey.name,
                version=run.journey_version,
                app=journey.app,
                run_id=run.id,
                kind="triggered",
                profile_id=event.profile_id,
            ),
        )

    async def _may_not_enter(
        self,
        journey: JourneyDefinition,
        previous: tuple[str, str, datetime] | None,
        workflow_id: str,
        now: datetime,
    ) -> str | None:
        """Why the re-entry policy keeps the profile out, or None."""
        if previous is None:
            return None
        last_entered_at = previous[2]
        assert journey.trigger is not None
        policy = journey.trigger.reentry
        if policy.policy == "never":
            return "entered before; re-entry: never"
        if (
            policy.policy == "after"
            and policy.after is not None
            and now < last_entered_at + policy.after
        ):
            return f"entered at {last_entered_at.isoformat()}; re-entry after {policy.after}"
        if await _running(self._client, workflow_id):
            return "its previous entry is still running"
        return None

    async def _snapshot(self, session: AsyncSession, run_id: str) -> JourneyDefinition | None:
        if run_id not in self._snapshots:
            run = await session.get(JourneyRun, run_id)
            if run is None:
                return None
            self._remember(run)
        return self._snapshots[run_id]

    def _remember(self, run: JourneyRun) -> JourneyDefinition:
        snapshot = self._snapshots.get(run.id)
        if snapshot is None:
            snapshot = JourneyDefinition.model_validate(run.definition)
            self._snapshots[run.id] = snapshot
        return snapshot


def _facts(profile: Profile | None, journey: JourneyDefinition) -> ProfileFacts:
    if profile is None:
        return ProfileFacts()
    attributes = profile.attributes or {}
    return ProfileFacts(
        timezone=profile.timezone,
        attributes={k: attributes[k] for k in journey.condition_attributes() if k in attributes},
    )


async def _running(client: Client, workflow_id: str) -> bool:
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return description.status == WorkflowExecutionStatus.RUNNING
