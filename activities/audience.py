"""Audience paging: the run workflow asks for one page of profile ids at a time, so an
audience is never loaded whole (a page is a keyset range on the profile id)."""

from __future__ import annotations

from sqlmodel import col, select
from temporalio import activity

from activities.contracts import LIST_AUDIENCE, AudiencePage, AudiencePageRequest
from tidings.store.db import Database
from tidings.store.models import Device, DeviceState, RunMember


class AudienceActivities:
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name=LIST_AUDIENCE)
    async def page(self, request: AudiencePageRequest) -> AudiencePage:
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
        statement = statement.order_by(column).limit(request.limit)
        async with self._db.read() as session:
            ids = list((await session.exec(statement)).all())
        next_after = ids[-1] if len(ids) == request.limit else None
        return AudiencePage(profile_ids=ids, next_after=next_after)
