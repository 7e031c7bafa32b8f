"""User mapping: an app's own user id mapped to a profile id, looked up both ways."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import insert_for
from tidings.store.models import AppUserMapping
from tidings.store.pages import Page, keyset


async def map_user(
    session: AsyncSession, *, app_id: str, app_user_id: str, profile_id: str, now: datetime
) -> AppUserMapping:
    """Map (or re-map) the app's user to a profile, which must exist; one upsert, safe under
    concurrency."""
    statement = insert_for(session, AppUserMapping).values(
        app_id=app_id, app_user_id=app_user_id, profile_id=profile_id, created_at=now
    )
    await session.exec(
        statement.on_conflict_do_update(
            index_elements=["app_id", "app_user_id"],
            set_={"profile_id": statement.excluded.profile_id},
        )
    )
    return (
        await session.exec(
            select(AppUserMapping)
            .where(col(AppUserMapping.app_id) == app_id)
            .where(col(AppUserMapping.app_user_id) == app_user_id)
            .execution_options(populate_existing=True)
        )
    ).one()


async def find_mapping(
    session: AsyncSession, app_id: str, app_user_id: str
) -> AppUserMapping | None:
    return await session.get(AppUserMapping, (app_id, app_user_id))


async def unmap_user(session: AsyncSession, app_id: str, app_user_id: str) -> bool:
    result = await session.exec(
        delete(AppUserMapping)
        .where(col(AppUserMapping.app_id) == app_id)
        .where(col(AppUserMapping.app_user_id) == app_user_id)
    )
    return bool(getattr(result, "rowcount", 0))


async def list_mappings(
    session: AsyncSession,
    *,
    app_id: str,
    profile_id: str | None,
    after: str | None,
    limit: int,
) -> Page[AppUserMapping]:
    """The app's mappings (of one profile: the reverse lookup), in app user id order."""
    statement = select(AppUserMapping).where(col(AppUserMapping.app_id) == app_id)
    if profile_id is not None:
        statement = statement.where(col(AppUserMapping.profile_id) == profile_id)
    return await keyset(session, statement, col(AppUserMapping.app_user_id), after, limit)
