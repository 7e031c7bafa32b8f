"""Erasing a profile: what identifies the person goes, anonymous counts stay.

The profile row (email, phone, time zone, locale, attributes), its devices (tokens) and its
user mappings are deleted. Rows that count what happened (the send ledger, interactions, run
memberships, journey events) stay so reports keep their totals, but their ``profile_id`` is
replaced by an opaque id drawn at random for this erasure: rows of one person still count as
one person, and nothing leads back to them. Free-form JSON columns of those rows (interaction
details, event properties) are emptied. The erasure itself is recorded by counts only.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Table, delete, func, update
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.models import AppUserMapping, Delivery, Device, Erasure, Interaction, Profile
from tidings.store.pages import Page, keyset
from tidings.store.webhooks import pseudonymise


def opaque_id() -> str:
    return f"erased-{uuid.uuid4().hex}"


def _kept_tables() -> list[Table]:
    """Every table with a ``profile_id`` that does not cascade from the profile row."""
    tables = []
    for table in SQLModel.metadata.sorted_tables:
        column = table.c.get("profile_id")
        if column is None or table.name == Profile.__tablename__:
            continue
        if any(fk.column.table.name == Profile.__tablename__ for fk in column.foreign_keys):
            continue
        tables.append(table)
    return tables


async def _count(session: AsyncSession, table: Table, profile_id: str) -> int:
    return int(
        (
            await session.exec(
                select(func.count()).select_from(table).where(table.c.profile_id == profile_id)
            )
        ).one()
    )


async def erase_profile(session: AsyncSession, profile_id: str, now: datetime) -> Erasure | None:
    """Erase the profile; None when nothing in the store mentions it."""
    profile = await session.get(Profile, profile_id)
    devices = await _count(session, SQLModel.metadata.tables["device"], profile_id)
    mappings = await _count(session, SQLModel.metadata.tables["app_user_mapping"], profile_id)
    pseudonym = opaque_id()
    erasure = Erasure(erased_at=now, devices=devices, mappings=mappings)
    # webhook events keep their payload, naming the pseudonym (the loop below would empty it)
    erasure.other_records += await pseudonymise(session, profile_id, pseudonym)
    for table in _kept_tables():
        json_columns: dict[str, Any] = {c.name: {} for c in table.c if isinstance(c.type, JSON)}
        result = await session.exec(
            update(table)
            .where(table.c.profile_id == profile_id)
            .values(profile_id=pseudonym, **json_columns)
        )
        changed = int(getattr(result, "rowcount", 0) or 0)
        if table.name == Delivery.__tablename__:
            erasure.deliveries += changed
        elif table.name == Interaction.__tablename__:
            erasure.interactions += changed
        else:
            erasure.other_records += changed
    if profile is None and not (
        devices or mappings or erasure.deliveries or erasure.interactions or erasure.other_records
    ):
        return None
    # explicit deletes, so the erasure does not depend on SQLite's foreign_keys pragma
    await session.exec(delete(Device).where(col(Device.profile_id) == profile_id))
    await session.exec(delete(AppUserMapping).where(col(AppUserMapping.profile_id) == profile_id))
    await session.exec(delete(Profile).where(col(Profile.id) == profile_id))
    session.add(erasure)
    await session.flush()
    return erasure


async def list_erasures(session: AsyncSession, *, after: int | None, limit: int) -> Page[Erasure]:
    return await keyset(session, select(Erasure), col(Erasure.id), after, limit)
