"""Journey runs from the designer's side: start one (store the snapshot, then start the run
workflow), activate a triggered journey, read a run's live status, cancel a run."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import CANCEL_SIGNAL, AudienceSpec
from tidings.journeys.model import JourneyDefinition
from tidings.journeys.predicates import AttributePredicate
from tidings.journeys.validation import JourneyInvalid, parse_definition
from tidings.runtime import engine_options
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.journeys import (
    create_run,
    finish_run,
    profiles_by_email,
    save_version,
    stored_definition,
    unknown_profiles,
)
from tidings.store.models import App, JourneyRun, RunStatus
from tidings.store.reports import Funnel, run_funnel
from tidings.store.triggers import activate, deactivate, entry_workflows, trigger_of
from tidings.store.types import utcnow
from workflows.cohort import CohortWorkflow
from workflows.inputs import EngineOptions, JourneyRunInput, RunResult, RunStatusView
from workflows.run import JourneyRunWorkflow

# Unknown ids and emails an error message names before it says "and N more".
NAMED_IN_ERRORS = 10


class StartError(ValueError):
    """The run cannot start; nothing was stored or started."""


class RunNotFound(LookupError):
    pass


@dataclass(frozen=True)
class AudienceChoice:
    """Who a run is for. Nothing listed: every profile with a valid device in the app
    (the journey's unless ``app`` names another). ``profile_ids`` and ``emails`` list the
    profiles; ``where`` keeps the profiles whose attributes match every predicate."""

    profile_ids: Sequence[str] = ()
    emails: Sequence[str] = ()
    where: Sequence[AttributePredicate] = ()
    # whose devices make the audience when none is listed (default: the journey's app)
    app: str | None = None

    @property
    def listed(self) -> bool:
        return bool(self.profile_ids or self.emails)


@dataclass(frozen=True)
class StartedRun:
    run_id: str
    handle: WorkflowHandle[JourneyRunWorkflow, RunResult]


@dataclass(frozen=True)
class Activation:
    """A triggered journey made active: its custom event now starts it per profile."""

    run_id: str
    event: str
    superseded: list[str]


def new_run_id(journey_id: str) -> str:
    return f"run-{journey_id}-{utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


async def load_stored(
    db: Database, journey_id: str, version: int | None = None
) -> JourneyDefinition:
    """A journey from the store (its latest version unless one is named)."""
    async with db.read() as session:
        found = await stored_definition(session, journey_id, version)
    if found is None:
        which = f"version {version} of journey" if version is not None else "journey"
        raise StartError(f"{which} {journey_id!r} is not in the store")
    try:
        return parse_definition(found[0])
    except JourneyInvalid as error:
        raise StartError(f"stored journey {journey_id!r} is no longer valid: {error}") from None


async def save_journey(db: Database, journey: JourneyDefinition) -> int:
    """Store the definition as the journey's newest version (unless unchanged)."""
    async with db.write() as session:
        return await save_version(session, journey.model_dump(mode="json"))


async def start_run(
    client: Client,
    db: Database,
    settings: Settings,
    journey: JourneyDefinition,
    *,
    profile_ids: Sequence[str] | None = None,
    audience: AudienceChoice | None = None,
    options: EngineOptions | None = None,
) -> StartedRun:
    """Start ``journey`` for an audience: the listed profiles, or every profile with a valid
    device in the journey's app (narrowed by ``audience.where``)."""
    if journey.trigger is not None:
        raise StartError(
            f"journey {journey.id!r} starts on the event {journey.trigger.event!r}: activate "
            "it instead of starting it for an audience"
        )
    choice = audience or AudienceChoice()
    if profile_ids is not None:
        choice = AudienceChoice(list(profile_ids), choice.emails, choice.where, choice.app)
    audience_app = choice.app or journey.app
    run_id = new_run_id(journey.id)
    definition = journey.model_dump(mode="json")
    kind: Literal["app", "members"] = (
        "members" if choice.listed or profile_ids is not None else "app"
    )
    async with db.write() as session:
        if await session.get(App, journey.app) is None:
            raise StartError(
                f"journey {journey.id!r} names app {journey.app!r}, which does not exist"
            )
        if await session.get(App, audience_app) is None:
            raise StartError(f"the audience names app {audience_app!r}, which does not exist")
        members = await _members(session, choice)
        version = await save_version(session, definition)
        await create_run(
            session,
            run_id=run_id,
            definition=definition,
            version=version,
            entry={
                "audience": kind,
                "app": audience_app,
                "profiles": len(members) if kind == "members" else None,
                "where": [p.model_dump(mode="json") for p in choice.where],
                "listens": journey.listened_events(),
            },
            members=members,
        )
    handle = await client.start_workflow(
        JourneyRunWorkflow.run,
        JourneyRunInput(
            run_id=run_id,
            journey=journey,
            audience=AudienceSpec(kind=kind, app_id=audience_app, where=list(choice.where)),
            options=options or engine_options(settings),
        ),
        id=run_id,
        task_queue=settings.task_queue,
    )
    return StartedRun(run_id, handle)


async def _members(session: AsyncSession, choice: AudienceChoice) -> list[str]:
    """The listed profiles' ids; unknown ids or emails stop the start, named."""
    if not choice.listed:
        return []
    missing = await unknown_profiles(session, choice.profile_ids)
    by_email = await profiles_by_email(session, choice.emails)
    missing += [email for email in dict.fromkeys(choice.emails) if email not in by_email]
    if missing:
        named = ", ".join(repr(m) for m in missing[:NAMED_IN_ERRORS])
        more = (
            f" and {len(missing) - NAMED_IN_ERRORS} more" if len(missing) > NAMED_IN_ERRORS else ""
        )
        raise StartError(f"{len(missing)} listed profiles are unknown: {named}{more}")
    return list(dict.fromkeys([*choice.profile_ids, *by_email.values()]))


async def activate_trigger(db: Database, journey: JourneyDefinition) -> Activation:
    """Make a triggered journey active: from now on its event starts it for the event's
    profile. An earlier activation of the journey stops taking new entries."""
    if journey.trigger is None:
        raise StartError(f"journey {journey.id!r} has no trigger; start it for an audience")
    run_id = new_run_id(journey.id)
    definition = journey.model_dump(mode="json")
    now = utcnow()
    async with db.write() as session:
        if await session.get(App, journey.app) is None:
            raise StartError(
                f"journey {journey.id!r} names app {journey.app!r}, which does not exist"
            )
        version = await save_version(session, definition)
        await create_run(
            session,
            run_id=run_id,
            definition=definition,
            version=version,
            entry={"trigger": journey.trigger.event, "listens": journey.listened_events()},
        )
        superseded = await activate(
            session,
            run_id=run_id,
            journey_id=journey.id,
            event_name=journey.trigger.event,
            now=now,
        )
        for old in superseded:
            funnel = await run_funnel(session, old)
            await finish_run(session, old, RunStatus.COMPLETED.value, _funnel_summary(funnel))
    return Activation(run_id, journey.trigger.event, superseded)


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
        await finish_run(session, run_id, RunStatus.CANCELLED.value, _funnel_summary(funnel))
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


def _funnel_summary(funnel: Funnel) -> dict[str, int]:
    return {
        "profiles": funnel.profiles_targeted,
        "push.delivered": funnel.delivered,
        "pushes_sent": funnel.pushes_sent,
        "push.unknown": funnel.unknown,
        "invalidated": funnel.tokens_invalidated,
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
    audience_exhausted: bool = False
    cancelling: bool = False


async def run_view(client: Client, db: Database, run_id: str) -> RunView:
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
        view.counts = _funnel_summary(funnel)
        # a triggered run whose activation stopped while it still runs: a cancel is waiting
        # for its entries to settle
        view.cancelling = (
            run.status == RunStatus.RUNNING and trigger is not None and not trigger.active
        )
        return view
    if run.status != RunStatus.RUNNING:
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
    view.audience_exhausted = status.audience_exhausted
    view.cancelling = status.cancelled
    return view
