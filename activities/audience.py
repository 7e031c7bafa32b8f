"""Audience paging: the run workflow asks for one page of profile ids at a time, so an
audience is never loaded whole (a page is a keyset range on the profile id).

A page carries, for each profile, what the interpreter needs without another activity: its
time zone (quiet hours, wait_until) and the attributes the journey's conditions read. An app
audience narrowed by ``where`` is filtered here with the very predicates condition nodes use;
a segment audience is selected by one query (tidings.store.segment_sql), nothing filtered here.
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
from tidings.store.segments import matching_ids

# A filtered page reads at most this many candidate profiles per requested one before it
# answers with what it found (the run asks again from where it stopped).
SCAN_FACTOR = 10
CHUNK = 900  # SQLite's bound-parameter budget


class AudienceActivities(AudienceActivity):
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name=LIST_AUDIENCE)
    async def page(self, request: AudiencePageRequest) -> AudiencePage:
        if request.audience.kind == "segment":
            return await self._segment_page(request)
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
        facts = _facts(candidates, profiles, request.attributes)
        return AudiencePage(profile_ids=candidates, next_after=next_after, facts=facts)

    async def _segment_page(self, request: AudiencePageRequest) -> AudiencePage:
        """A page of a segment audience: one query selects the matching profiles after the
        last page's id, so the pages are the same whichever worker reads them and however
        often the run continues as new."""
        audience = request.audience
        assert audience.definition is not None
        assert audience.as_of is not None
        async with self._db.read() as session:
            ids = await matching_ids(
                session,
                audience.definition,
                audience.as_of,
                after=request.after,
                limit=request.limit,
            )
            profiles = await _profiles(session, ids, bool(request.attributes))
        return AudiencePage(
            profile_ids=ids,
            next_after=ids[-1] if len(ids) == request.limit else None,
            facts=_facts(ids, profiles, request.attributes),
        )

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


def _facts(
    profile_ids: list[str],
    profiles: dict[str, tuple[str | None, dict[str, Any]]],
    names: list[str],
) -> dict[str, ProfileFacts]:
    facts: dict[str, ProfileFacts] = {}
    for pid in profile_ids:
        timezone, attributes = profiles.get(pid, (None, {}))
        wanted = {k: attributes[k] for k in names if k in attributes}
        if timezone or wanted:
            facts[pid] = ProfileFacts(timezone=timezone, attributes=wanted)
    return facts


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
