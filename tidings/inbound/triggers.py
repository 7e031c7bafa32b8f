"""Custom events reaching journeys, once the API has stored them.

- A journey activated with a trigger on the event's name starts for the event's profile: a
  cohort of one, started by signal-with-start (the event is its first signal), with a
  workflow id derived from journey and profile, so a profile never runs it twice at once. The
  re-entry policy decides whether a profile that entered before may enter again.
- A running journey the profile is in, that listens for the event (its goal, a wait_for), gets
  the event through the ``interactions`` signal (kind ``custom``), which cohorts deduplicate
  by event id.

Forwarding is idempotent enough to repeat: the API forwards right after storing, and a sweep
forwards what a failure (Temporal unreachable) left behind.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import ProfileFacts
from tidings.journeys.model import JourneyDefinition
from tidings.settings import Settings
from tidings.store.custom_events import mark_failed, mark_forwarded, unforwarded
from tidings.store.db import Database
from tidings.store.journey_events import running_entries
from tidings.store.models import CustomEvent, JourneyEntry, JourneyRun, Profile
from tidings.store.triggers import (
    NewEntry,
    active_triggers,
    entries_of_profile,
    prior_visits,
    record_entry,
)
from tidings.store.types import utcnow
from tidings.temporal.search import start_options
from tidings.worker.resources import engine_options
from workflows.cohort import CohortWorkflow
from workflows.contracts import INTERACTIONS_SIGNAL, CohortInput, InteractionBatch, InteractionEvent

log = logging.getLogger(__name__)

ClientFactory = Callable[[], Awaitable[Client]]


def entry_workflow_id(journey_id: str, profile_id: str) -> str:
    """The cohort of one that runs a triggered journey for one profile."""
    return f"journey/{journey_id}/profile/{profile_id}"


@dataclass
class Forwarded:
    started: list[str] = field(default_factory=list)  # journeys the event started
    signalled: list[str] = field(default_factory=list)  # workflows that got it as a signal
    skipped: dict[str, str] = field(default_factory=dict)  # journey -> why it did not start


class EventForwarder:
    def __init__(self, db: Database, settings: Settings, client: ClientFactory) -> None:
        self._db = db
        self._settings = settings
        self._client = client
        # run id -> definition snapshot (immutable, so cached for the process's life)
        self._snapshots: dict[str, JourneyDefinition] = {}

    async def forward(self, event: CustomEvent) -> Forwarded:
        """Start and signal what the event concerns, then mark it forwarded. On failure the
        error is recorded on the event (for the sweep) and raised."""
        try:
            done, entered = await self._forward(event)
        except Exception as error:
            async with self._db.write() as session:
                await mark_failed(session, event.event_id, f"{type(error).__name__}: {error}")
            raise
        # the entries and the event's fate in one transaction
        async with self._db.write() as session:
            for entry in entered:
                await record_entry(session, entry)
            await mark_forwarded(session, event.event_id, utcnow())
        return done

    async def sweep(self, older_than_s: float = 5.0, limit: int = 100) -> int:
        """Forward stored events a failure left behind; return how many went through."""
        async with self._db.read() as session:
            pending = await unforwarded(
                session, older_than=utcnow() - timedelta(seconds=older_than_s), limit=limit
            )
        forwarded = 0
        for event in pending:
            try:
                await self.forward(event)
                forwarded += 1
            except Exception as error:  # recorded on the event, retried later
                log.warning("custom event %s not forwarded yet: %s", event.event_id, error)
                break
        return forwarded

    async def _forward(self, event: CustomEvent) -> tuple[Forwarded, list[NewEntry]]:
        now = utcnow()
        batch = InteractionBatch(
            [
                InteractionEvent(
                    event_id=f"event:{event.event_id}",
                    profile_id=event.profile_id,
                    kind="custom",
                    occurred_at=event.occurred_at,
                    name=event.name,
                )
            ]
        )
        async with self._db.read() as session:
            triggers = await active_triggers(session, event.name)
            entries = {e.journey_id: e for e in await entries_of_profile(session, event.profile_id)}
            listening = await running_entries(session, event.profile_id)
            profile = await session.get(Profile, event.profile_id)
            for known in entries.values():
                await self._snapshot(session, known.run_id)
        done = Forwarded()
        entered: list[NewEntry] = []
        # Temporal is asked only when there is something to start or signal (the factory
        # connects once): most events concern no journey
        for run in triggers:
            client = await self._client()
            journey = self._remember(run)
            workflow_id = entry_workflow_id(journey.id, event.profile_id)
            previous = entries.get(journey.id)
            reason = await self._may_not_enter(client, journey, previous, workflow_id, now)
            if reason:
                done.skipped[journey.id] = reason
                continue
            visits: dict[str, int] = {}
            if previous is not None:
                async with self._db.read() as session:
                    visits = await prior_visits(session, workflow_id)
            await client.start_workflow(
                CohortWorkflow.run,
                CohortInput(
                    run_id=run.id,
                    journey=journey,
                    profile_ids=[event.profile_id],
                    options=engine_options(self._settings),
                    facts={event.profile_id: _facts(profile, journey)},
                    triggered=True,
                    prior_visits=visits,
                    local_delivery=True,
                ),
                id=workflow_id,
                task_queue=self._settings.task_queue,
                start_signal=INTERACTIONS_SIGNAL,
                start_signal_args=[batch],
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                **await start_options(
                    client,
                    journey_id=journey.id,
                    journey_name=journey.name,
                    version=run.journey_version,
                    app=journey.app,
                    run_id=run.id,
                    kind="triggered",
                    profile_id=event.profile_id,
                ),
            )
            entered.append(NewEntry(journey.id, event.profile_id, run.id, workflow_id, now))
            done.started.append(journey.id)
        targets: set[str] = set()
        for entry in entries.values():
            snapshot = self._snapshots.get(entry.run_id)
            if snapshot is not None and event.name in snapshot.listened_events():
                targets.add(entry.workflow_id)
        for workflow_id, run in listening:
            if event.name in (run.entry or {}).get("listens", []):
                targets.add(workflow_id)
        targets -= {entry_workflow_id(j, event.profile_id) for j in done.started}
        for workflow_id in sorted(targets):
            if await _signal(await self._client(), workflow_id, batch):
                done.signalled.append(workflow_id)
        return done, entered

    async def _may_not_enter(
        self,
        client: Client,
        journey: JourneyDefinition,
        entry: JourneyEntry | None,
        workflow_id: str,
        now: datetime,
    ) -> str | None:
        """Why the re-entry policy keeps the profile out, or None."""
        if entry is None:
            return None
        assert journey.trigger is not None
        policy = journey.trigger.reentry
        if policy.policy == "never":
            return "entered before; re-entry: never"
        if (
            policy.policy == "after"
            and policy.after is not None
            and now < entry.last_entered_at + policy.after
        ):
            return f"entered at {entry.last_entered_at.isoformat()}; re-entry after {policy.after}"
        if await _running(client, workflow_id):
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


async def _signal(client: Client, workflow_id: str, batch: InteractionBatch) -> bool:
    """Signal a running workflow; a finished (or unknown) one is not an error."""
    try:
        await client.get_workflow_handle(workflow_id).signal(INTERACTIONS_SIGNAL, batch)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True
