"""Starting a journey run: store the snapshot, then start the run workflow."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from temporalio.client import Client, WorkflowHandle

from activities.contracts import AudienceSpec
from tidings.journeys.model import JourneyDefinition
from tidings.runtime import engine_options
from tidings.settings import Settings
from tidings.store.db import Database
from tidings.store.journeys import create_run, save_version
from tidings.store.models import App
from tidings.store.types import utcnow
from workflows.inputs import EngineOptions, JourneyRunInput, RunResult
from workflows.run import JourneyRunWorkflow


class StartError(ValueError):
    """The run cannot start; nothing was stored or started."""


@dataclass(frozen=True)
class StartedRun:
    run_id: str
    handle: WorkflowHandle[JourneyRunWorkflow, RunResult]


def new_run_id(journey_id: str) -> str:
    return f"run-{journey_id}-{utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


async def start_run(
    client: Client,
    db: Database,
    settings: Settings,
    journey: JourneyDefinition,
    *,
    profile_ids: Sequence[str] | None = None,
    options: EngineOptions | None = None,
) -> StartedRun:
    """Start ``journey`` for the listed profiles, or for every profile with a valid device
    in the journey's app when no list is given."""
    run_id = new_run_id(journey.id)
    definition = journey.model_dump(mode="json")
    kind: Literal["app", "members"] = "members" if profile_ids is not None else "app"
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
            entry={"audience": kind, "profiles": len(profile_ids) if profile_ids else None},
            members=profile_ids or (),
        )
    handle = await client.start_workflow(
        JourneyRunWorkflow.run,
        JourneyRunInput(
            run_id=run_id,
            journey=journey,
            audience=AudienceSpec(kind=kind, app_id=journey.app),
            options=options or engine_options(settings),
        ),
        id=run_id,
        task_queue=settings.task_queue,
    )
    return StartedRun(run_id, handle)
