"""Starting journey runs: store the definition's snapshot, then start the run workflow for
an audience; or activate a triggered journey."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client, WorkflowHandle

from activities.contracts import AudienceSpec
from tidings.journeys.model import JourneyDefinition
from tidings.journeys.predicates import AttributePredicate, all_attributes_match
from tidings.journeys.segments import SegmentInvalid, parse_segment
from tidings.journeys.validation import JourneyInvalid, parse_definition
from tidings.runs.errors import StartError
from tidings.runs.options import engine_options
from tidings.runs.view import funnel_summary
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
from tidings.store.models import (
    App,
    Device,
    DeviceState,
    JourneyRun,
    Profile,
    RunStatus,
    Segment,
)
from tidings.store.reports import run_funnel
from tidings.store.segments import matching_ids
from tidings.store.triggers import activate
from tidings.store.types import utcnow
from tidings.temporal.search import start_options
from workflows.contracts import EngineOptions, JourneyRunInput, RunResult
from workflows.run import JourneyRunWorkflow

# Profiles read at a time when checking that a filter matches someone (SQLite's bound
# parameters allow 999).
AUDIENCE_PAGE = 900
# Unknown ids and emails an error message names before it says "and N more".
NAMED_IN_ERRORS = 10


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
    # a saved segment's name: its profiles, and nothing else may be given
    segment: str | None = None

    @property
    def listed(self) -> bool:
        return bool(self.profile_ids or self.emails)

    @property
    def given(self) -> bool:
        return bool(self.listed or self.where or self.app or self.segment)


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
    recorded = await record_run(
        db, journey, new_run_id(journey.id), profile_ids=profile_ids, audience=audience
    )
    handle = await client.start_workflow(
        JourneyRunWorkflow.run,
        recorded.input(options or engine_options(settings)),
        id=recorded.run_id,
        task_queue=settings.task_queue,
        **await start_options(
            client,
            journey_id=journey.id,
            journey_name=journey.name,
            version=recorded.version,
            app=journey.app,
            run_id=recorded.run_id,
            kind="audience",
        ),
    )
    return StartedRun(recorded.run_id, handle)


@dataclass(frozen=True)
class RecordedRun:
    """A run stored with its snapshot and audience, ready for its workflow to start."""

    run_id: str
    version: int
    journey: JourneyDefinition
    audience: AudienceSpec

    def input(self, options: EngineOptions) -> JourneyRunInput:
        return JourneyRunInput(
            run_id=self.run_id, journey=self.journey, audience=self.audience, options=options
        )


async def record_run(
    db: Database,
    journey: JourneyDefinition,
    run_id: str,
    *,
    profile_ids: Sequence[str] | None = None,
    audience: AudienceChoice | None = None,
    schedule_id: str | None = None,
) -> RecordedRun:
    """Check the audience and store the run (its snapshot as the journey's newest version,
    its listed members): what every start does before its run workflow starts. A run a
    schedule fired names the schedule in its entry."""
    if journey.trigger is not None:
        raise StartError(
            f"journey {journey.id!r} starts on the event {journey.trigger.event!r}: activate "
            "it instead of starting it for an audience"
        )
    choice = audience or AudienceChoice()
    if profile_ids is not None:
        choice = AudienceChoice(
            list(profile_ids), choice.emails, choice.where, choice.app, choice.segment
        )
    if journey.audience is not None and not choice.given:
        choice = AudienceChoice(
            where=journey.audience.where,
            app=journey.audience.app,
            segment=journey.audience.segment,
        )
    if choice.segment is not None:
        return await _record_segment_run(db, journey, run_id, choice, schedule_id)
    audience_app = choice.app or journey.app
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
        if choice.where and not await _anyone_matches(session, audience_app, members, choice):
            filters = ", ".join(_filter_text(p) for p in choice.where)
            among = "the listed profiles" if choice.listed else f"profiles of app {audience_app!r}"
            raise StartError(f"no profile matches the audience: none of the {among} has {filters}")
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
            }
            | ({"schedule": schedule_id} if schedule_id is not None else {}),
            members=members,
        )
    spec = AudienceSpec(kind=kind, app_id=audience_app, where=list(choice.where))
    return RecordedRun(run_id, version, journey, spec)


def recorded_run(run: JourneyRun) -> RecordedRun:
    """A run stored before, as ``record_run`` answered when it stored it."""
    entry = run.entry or {}
    where = [AttributePredicate.model_validate(p) for p in entry.get("where", [])]
    spec = AudienceSpec(kind=entry["audience"], app_id=entry["app"], where=where)
    if entry["audience"] == "segment":
        spec = AudienceSpec(
            kind="segment",
            app_id=entry["app"],
            segment=entry["segment"],
            definition=parse_segment(entry["definition"]),
            as_of=datetime.fromisoformat(entry["as_of"]),
        )
    return RecordedRun(run.id, run.journey_version or 1, parse_definition(run.definition), spec)


async def _record_segment_run(
    db: Database,
    journey: JourneyDefinition,
    run_id: str,
    choice: AudienceChoice,
    schedule_id: str | None,
) -> RecordedRun:
    """Store a run whose audience is a saved segment: the segment's definition as it is now
    goes into the run's entry and input (a snapshot, as the journey's), with the moment its
    day windows count back from."""
    assert choice.segment is not None
    if choice.listed or choice.where or choice.app:
        raise StartError(
            "a segment audience takes no listed profiles, filters or app: put them in the segment"
        )
    as_of = utcnow()
    definition = journey.model_dump(mode="json")
    async with db.write() as session:
        if await session.get(App, journey.app) is None:
            raise StartError(
                f"journey {journey.id!r} names app {journey.app!r}, which does not exist"
            )
        row = await session.get(Segment, choice.segment)
        if row is None:
            raise StartError(
                f"the audience names segment {choice.segment!r}, which does not exist (was it "
                "deleted or renamed?)"
            )
        try:
            segment = parse_segment(row.definition)
        except SegmentInvalid as error:
            raise StartError(f"segment {choice.segment!r} is no longer valid: {error}") from None
        if not await matching_ids(session, segment, as_of, after=None, limit=1):
            raise StartError(f"no profile matches segment {choice.segment!r}")
        version = await save_version(session, definition)
        await create_run(
            session,
            run_id=run_id,
            definition=definition,
            version=version,
            entry={
                "audience": "segment",
                "app": journey.app,
                "segment": choice.segment,
                "definition": segment.to_data(),
                "as_of": as_of.isoformat(),
                "listens": journey.listened_events(),
            }
            | ({"schedule": schedule_id} if schedule_id is not None else {}),
            members=[],
        )
    spec = AudienceSpec(
        kind="segment",
        app_id=journey.app,
        segment=choice.segment,
        definition=segment,
        as_of=as_of,
    )
    return RecordedRun(run_id, version, journey, spec)


async def _anyone_matches(
    session: AsyncSession, app_id: str, members: list[str], choice: AudienceChoice
) -> bool:
    """Whether at least one profile of the audience passes its filters (read by pages, so a
    large app costs only as much as the first match)."""
    if choice.listed:
        ordered = sorted(members)
        pages = [ordered[i : i + AUDIENCE_PAGE] for i in range(0, len(ordered), AUDIENCE_PAGE)]
        return any([await _any_passes(session, page, choice) for page in pages])
    after: str | None = None
    while True:
        statement = (
            select(col(Device.profile_id))
            .where(col(Device.app_id) == app_id)
            .where(col(Device.state) == DeviceState.VALID.value)
            .distinct()
            .order_by(col(Device.profile_id))
            .limit(AUDIENCE_PAGE)
        )
        if after is not None:
            statement = statement.where(col(Device.profile_id) > after)
        ids = list((await session.exec(statement)).all())
        if not ids:
            return False
        if await _any_passes(session, ids, choice):
            return True
        after = ids[-1]


async def _any_passes(
    session: AsyncSession, profile_ids: list[str], choice: AudienceChoice
) -> bool:
    rows = await session.exec(
        select(col(Profile.attributes)).where(col(Profile.id).in_(profile_ids))
    )
    where = list(choice.where)
    return any(all_attributes_match(where, attributes or {}) for attributes in rows.all())


def _filter_text(predicate: AttributePredicate) -> str:
    return f"{predicate.attribute} {predicate.op} {predicate.value!r}"


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
            await finish_run(session, old, RunStatus.COMPLETED.value, funnel_summary(funnel))
    return Activation(run_id, journey.trigger.event, superseded)
