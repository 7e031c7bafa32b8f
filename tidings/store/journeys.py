"""Journey definitions in the store: versioned, and snapshotted into each run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store import webhooks
from tidings.store.dialect import insert_for
from tidings.store.models import (
    Journey,
    JourneyRun,
    JourneyVersion,
    Profile,
    RunMember,
    RunStatus,
)
from tidings.store.types import utcnow
from tidings.store.webhooks import WebhookEvent, WebhookEventType


async def save_version(session: AsyncSession, definition: dict[str, Any]) -> int:
    """Store the definition as the journey's newest version unless it equals the newest one;
    return that version's number."""
    journey_id = str(definition["id"])
    journey = await session.get(Journey, journey_id)
    now = utcnow()
    if journey is None:
        session.add(Journey(id=journey_id, name=str(definition["name"]), latest_version=1))
        session.add(JourneyVersion(journey_id=journey_id, version=1, definition=definition))
        await session.flush()
        return 1
    latest = await session.get(JourneyVersion, (journey_id, journey.latest_version))
    if latest is not None and latest.definition == definition:
        return journey.latest_version
    journey.latest_version += 1
    journey.name = str(definition["name"])
    journey.updated_at = now
    session.add(
        JourneyVersion(journey_id=journey_id, version=journey.latest_version, definition=definition)
    )
    await session.flush()
    return journey.latest_version


async def create_run(
    session: AsyncSession,
    *,
    run_id: str,
    definition: dict[str, Any],
    version: int | None,
    entry: dict[str, Any],
    members: Sequence[str] = (),
) -> JourneyRun:
    run = JourneyRun(
        id=run_id,
        journey_id=str(definition["id"]),
        journey_version=version,
        definition=definition,
        entry=entry,
    )
    session.add(run)
    await session.flush()
    started = WebhookEvent(
        WebhookEventType.RUN_STARTED,
        run_id,
        _app_of(definition),
        run.started_at,
        {
            "run_id": run_id,
            "journey_id": run.journey_id,
            "journey_version": version,
            "entry": entry,
        },
    )
    await webhooks.enqueue(session, [started], run.started_at)
    unique = list(dict.fromkeys(members))
    for start in range(0, len(unique), 5000):
        await session.exec(
            insert_for(session, RunMember)
            .values([{"run_id": run_id, "profile_id": p} for p in unique[start : start + 5000]])
            .on_conflict_do_nothing()
        )
    return run


async def recent_runs(session: AsyncSession, limit: int = 20) -> list[JourneyRun]:
    result = await session.exec(
        select(JourneyRun).order_by(col(JourneyRun.started_at).desc()).limit(limit)
    )
    return list(result.all())


async def stored_definition(
    session: AsyncSession, journey_id: str, version: int | None = None
) -> tuple[dict[str, Any], int] | None:
    """A stored version of a journey (its latest when ``version`` is None)."""
    journey = await session.get(Journey, journey_id)
    if journey is None:
        return None
    number = version if version is not None else journey.latest_version
    stored = await session.get(JourneyVersion, (journey_id, number))
    return (stored.definition, number) if stored is not None else None


async def stored_journeys(session: AsyncSession) -> list[Journey]:
    result = await session.exec(select(Journey).order_by(col(Journey.id)))
    return list(result.all())


async def profiles_by_email(session: AsyncSession, emails: Sequence[str]) -> dict[str, str]:
    """email -> profile id, for the emails that name a profile."""
    found: dict[str, str] = {}
    unique = list(dict.fromkeys(emails))
    for start in range(0, len(unique), 900):
        rows = await session.exec(
            select(col(Profile.email), col(Profile.id)).where(
                col(Profile.email).in_(unique[start : start + 900])
            )
        )
        found.update({str(email): profile_id for email, profile_id in rows.all()})
    return found


async def unknown_profiles(session: AsyncSession, profile_ids: Sequence[str]) -> list[str]:
    """The ids that name no profile, in the order given."""
    unique = list(dict.fromkeys(profile_ids))
    known: set[str] = set()
    for start in range(0, len(unique), 900):
        rows = await session.exec(
            select(col(Profile.id)).where(col(Profile.id).in_(unique[start : start + 900]))
        )
        known.update(rows.all())
    return [pid for pid in unique if pid not in known]


async def finish_run(
    session: AsyncSession,
    run_id: str,
    status: str,
    summary: dict[str, Any],
    error: str | None = None,
) -> None:
    """Record the run's end. The first end recorded (the run was running) is told to the
    webhook endpoints in the same transaction; a repeated one only rewrites the row."""
    now = utcnow()
    values = {"status": status, "summary": summary, "error": error, "finished_at": now}
    ended = await session.exec(
        update(JourneyRun)
        .where(col(JourneyRun.id) == run_id)
        .where(col(JourneyRun.status) == RunStatus.RUNNING.value)
        .values(**values)
    )
    if not ended.rowcount:
        await session.exec(update(JourneyRun).where(col(JourneyRun.id) == run_id).values(**values))
        return
    run = await session.get(JourneyRun, run_id)
    if run is None:
        return
    finished = WebhookEvent(
        WebhookEventType.RUN_FINISHED,
        run_id,
        _app_of(run.definition),
        now,
        {
            "run_id": run_id,
            "journey_id": run.journey_id,
            "journey_version": run.journey_version,
            "status": status,
            "summary": summary,
            "error": error,
        },
    )
    await webhooks.enqueue(session, [finished], now)


def _app_of(definition: dict[str, Any]) -> str | None:
    app = definition.get("app")
    return str(app) if app else None
