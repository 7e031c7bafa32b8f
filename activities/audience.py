"""Audience paging: the run workflow asks for one page of profile ids at a time, so an
audience is never loaded whole (a page is a keyset range on the profile id).

A page carries, for each profile, what the interpreter needs without another activity: its
time zone (quiet hours, wait_until) and the attributes the journey's conditions read. An app
audience narrowed by ``where`` is filtered here with the very predicates condition nodes use.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio import activity

from activities.contracts import AudiencePage, AudiencePageRequest, ProfileFacts
from activities.declarations import LIST_AUDIENCE, AudienceActivity
from tidings.journeys.predicates import all_attributes_match
from tidings.store.db import Database
from tidings.store.models import Device, DeviceState, Profile, RunMember

# A filtered page reads at most this many candidate profiles per requested one before it
# answers with what it found (the run asks again from where it stopped).
SCAN_FACTOR = 10
CHUNK = 900  # SQLite's bound-parameter budget


class AudienceActivities(AudienceActivity):
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name=LIST_AUDIENCE)
    async def page(self, request: AudiencePageRequest) -> AudiencePage:
        where = request.audience.where
        scan_limit = request.limit * SCAN_FACTOR if where else request.limit
        with_attributes = bool(where or request.attributes)
        async with self._db.read() as session:
            candidates = list((await session.exec(self._candidates(request, scan_limit))).all())
            profiles = await _profiles(session, candidates, with_attributes)
        next_after = candidates[-1] if len(candidates) == scan_limit else None
        if where:
            candidates = [
                pid
                for pid in candidates
                if pid in profiles and all_attributes_match(where, profiles[pid][1])
            ]
        facts: dict[str, ProfileFacts] = {}
        for pid in candidates:
            timezone, attributes = profiles.get(pid, (None, {}))
            wanted = {k: attributes[k] for k in request.attributes if k in attributes}
            if timezone or wanted:
                facts[pid] = ProfileFacts(timezone=timezone, attributes=wanted)
        return AudiencePage(profile_ids=candidates, next_after=next_after, facts=facts)

    def _candidates(self, request: AudiencePageRequest, limit: int) -> Any:
        if request.audience.kind == "members":
            statement = select(col(RunMember.profile_id)).where(
                col(RunMember.run_id) == request.run_id
            )
            column = col(RunMember.profile_id)
        else:
            # Every profile with at least one valid device in the app.
            statement = (
                select(col(Device.profile_id))
                .where(col(Device.app_id) == request.audience.app_id)
                .where(col(Device.state) == DeviceState.VALID.value)
                .distinct()
            )
            column = col(Device.profile_id)
        if request.after is not None:
            statement = statement.where(column > request.after)
        return statement.order_by(column).limit(limit)


async def _profiles(
    session: AsyncSession, profile_ids: list[str], with_attributes: bool
) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """Time zone and (when asked) attributes by profile id; without attributes only the
    profiles that have a time zone are read back."""
    found: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for start in range(0, len(profile_ids), CHUNK):
        chunk = profile_ids[start : start + CHUNK]
        if with_attributes:
            rows = await session.exec(
                select(col(Profile.id), col(Profile.timezone), col(Profile.attributes)).where(
                    col(Profile.id).in_(chunk)
                )
            )
            for profile_id, timezone, attributes in rows.all():
                found[profile_id] = (timezone, attributes or {})
        else:
            zones = await session.exec(
                select(col(Profile.id), col(Profile.timezone))
                .where(col(Profile.id).in_(chunk))
                .where(col(Profile.timezone).is_not(None))
            )
            for profile_id, timezone in zones.all():
                found[profile_id] = (timezone, {})
    return found
