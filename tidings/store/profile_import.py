"""Imported profiles written a chunk at a time: one transaction, a few statements whatever the
chunk's size (each an executemany; on PostgreSQL the profiles go through COPY into a
temporary table and one ``INSERT ... SELECT ... ON CONFLICT``).

A row is an upsert by profile id: its personal fields replace the stored ones (created_at is
kept), its user mappings are upserted (an app user mapped elsewhere moves to this profile)
and its devices registered as ``POST /v1/apps/{app}/devices`` does (a token of another
profile moves to this one, and is valid again). Mappings and devices a row does not name are
left alone.

Rows are written in the same global lock order as device registration (profiles by id, then
devices by app and token), so an import never deadlocks with registrations on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, any_, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.dialect import insert_for
from tidings.store.models import App, AppUserMapping, Device, DeviceState, Profile

PERSONAL = ("email", "phone", "timezone", "locale")


@dataclass(frozen=True)
class ProfileRow:
    id: str
    email: str | None
    phone: str | None
    timezone: str | None
    locale: str | None
    attributes: dict[str, Any]
    users: dict[str, str]
    devices: list[tuple[str, str, str, str | None]]  # app, provider, token, environment


@dataclass(frozen=True)
class Refusal:
    """Why the store refuses a row (before anything of the chunk is written)."""

    index: int
    field: str
    message: str


@dataclass(frozen=True)
class ChunkWritten:
    created: int
    updated: int
    refused: list[Refusal]


async def known_apps(session: AsyncSession, app_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(app_ids))
    if not ids:
        return set()
    return set((await session.exec(select(col(App.id)).where(col(App.id).in_(ids)))).all())


def _one_of(session: AsyncSession, column: Any, values: list[str]) -> Any:
    """``column IN values``; on PostgreSQL ``= ANY(array)``, one parameter rather than a
    chunk's worth, which SQLAlchemy would render and psycopg bind one by one."""
    if _is_postgresql(session):
        return column == any_(bindparam("values", values, type_=ARRAY(String)))
    return column.in_(values)


async def _owners(session: AsyncSession, column: Any, values: list[str]) -> dict[str, str]:
    if not values:
        return {}
    found = await session.exec(
        select(column, col(Profile.id)).where(_one_of(session, column, values))
    )
    return {value: owner for value, owner in found.all()}


async def _refusals(session: AsyncSession, rows: Sequence[ProfileRow]) -> list[Refusal]:
    """Rows naming an app the store lacks, or an email or phone another profile holds."""
    apps = await known_apps(
        session, [a for r in rows for a in (*r.users, *(d[0] for d in r.devices))]
    )
    emails = await _owners(session, col(Profile.email), [r.email for r in rows if r.email])
    phones = await _owners(session, col(Profile.phone), [r.phone for r in rows if r.phone])
    by_id = {row.id: row for row in rows}

    def taken(field: str, value: str | None, owners: dict[str, str], row_id: str) -> bool:
        """Another profile holds the value, and keeps it: a row of this chunk giving it up
        frees it (if the chunk's order of writing does not, the chunk is written row by
        row)."""
        owner = owners.get(value or "", row_id)
        if owner == row_id:
            return False
        releasing = by_id.get(owner)
        return releasing is None or getattr(releasing, field) == value

    refused = []
    for index, row in enumerate(rows):
        missing = [a for a in row.users if a not in apps]
        if missing:
            refused.append(Refusal(index, f"users.{missing[0]}", f"no app {missing[0]!r}"))
            continue
        missing_device = [n for n, d in enumerate(row.devices) if d[0] not in apps]
        if missing_device:
            app = row.devices[missing_device[0]][0]
            refused.append(Refusal(index, f"devices.{missing_device[0]}.app", f"no app {app!r}"))
            continue
        if row.email is not None and taken("email", row.email, emails, row.id):
            refused.append(Refusal(index, "email", "another profile has this email"))
            continue
        if row.phone is not None and taken("phone", row.phone, phones, row.id):
            refused.append(Refusal(index, "phone", "another profile has this phone"))
    return refused


async def write_chunk(
    session: AsyncSession, rows: Sequence[ProfileRow], now: datetime
) -> ChunkWritten:
    """Write the rows the store accepts (in the session's transaction; the caller commits)
    and answer those it refuses, of which nothing is written."""
    refused = await _refusals(session, rows)
    skip = {r.index for r in refused}
    accepted = sorted((r for i, r in enumerate(rows) if i not in skip), key=lambda r: r.id)
    if not accepted:
        return ChunkWritten(0, 0, refused)
    ids = [r.id for r in accepted]
    existing = set(
        (
            await session.exec(
                select(col(Profile.id)).where(_one_of(session, col(Profile.id), ids))
            )
        ).all()
    )
    await _upsert_profiles(session, accepted, now)
    await _upsert_mappings(session, accepted, now)
    await _upsert_devices(session, accepted, now)
    return ChunkWritten(len(accepted) - len(existing), len(existing), refused)


def _is_postgresql(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


async def _upsert_profiles(
    session: AsyncSession, rows: Sequence[ProfileRow], now: datetime
) -> None:
    if _is_postgresql(session):
        await _copy_profiles(session, rows, now)
        return
    statement = insert_for(session, Profile)
    statement = statement.on_conflict_do_update(
        index_elements=["id"],
        set_={
            **{field: getattr(statement.excluded, field) for field in PERSONAL},
            "attributes": statement.excluded.attributes,
            "updated_at": statement.excluded.updated_at,
        },
    )
    await session.exec(
        statement,
        params=[
            {
                "id": r.id,
                "email": r.email,
                "phone": r.phone,
                "timezone": r.timezone,
                "locale": r.locale,
                "attributes": r.attributes,
                "created_at": now,
                "updated_at": now,
            }
            for r in rows
        ],
    )


async def _copy_upsert(
    session: AsyncSession,
    table: str,
    columns: dict[str, str],
    rows: Iterable[tuple[Any, ...]],
    upsert: str,
    **values: Any,
) -> None:
    """COPY the rows into a temporary table, then one upsert from it: the fastest way
    PostgreSQL takes many rows, in the session's own transaction."""
    connection = await session.connection()
    names = ", ".join(columns)
    typed = ", ".join(f"{name} {kind}" for name, kind in columns.items())
    await connection.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ({typed}) ON COMMIT DELETE ROWS"
    )
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    async with driver.cursor() as cursor, cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in rows:
            await copy.write_row(row)
    await connection.execute(text(upsert).bindparams(**values))
    await connection.exec_driver_sql(f"DELETE FROM {table}")


async def _copy_profiles(session: AsyncSession, rows: Sequence[ProfileRow], now: datetime) -> None:
    await _copy_upsert(
        session,
        "profile_import_rows",
        {
            "id": "text",
            "email": "text",
            "phone": "text",
            "timezone": "text",
            "locale": "text",
            "attributes": "jsonb",
        },
        ((r.id, r.email, r.phone, r.timezone, r.locale, json.dumps(r.attributes)) for r in rows),
        "INSERT INTO profile (id, email, phone, timezone, locale, attributes, created_at, "
        "updated_at) SELECT id, email, phone, timezone, locale, attributes, :now, :now "
        "FROM profile_import_rows ORDER BY id "
        "ON CONFLICT (id) DO UPDATE SET email = excluded.email, phone = excluded.phone, "
        "timezone = excluded.timezone, locale = excluded.locale, "
        "attributes = excluded.attributes, updated_at = excluded.updated_at",
        now=now,
    )


async def _upsert_mappings(
    session: AsyncSession, rows: Sequence[ProfileRow], now: datetime
) -> None:
    params = sorted(
        (
            {"app_id": app, "app_user_id": user, "profile_id": r.id, "created_at": now}
            for r in rows
            for app, user in r.users.items()
        ),
        key=lambda p: (p["app_id"], p["app_user_id"]),
    )
    if not params:
        return
    if _is_postgresql(session):
        await _copy_upsert(
            session,
            "mapping_import_rows",
            {"app_id": "text", "app_user_id": "text", "profile_id": "text"},
            ((p["app_id"], p["app_user_id"], p["profile_id"]) for p in params),
            "INSERT INTO app_user_mapping (app_id, app_user_id, profile_id, created_at) "
            "SELECT app_id, app_user_id, profile_id, :now FROM mapping_import_rows "
            "ORDER BY app_id, app_user_id ON CONFLICT (app_id, app_user_id) "
            "DO UPDATE SET profile_id = excluded.profile_id",
            now=now,
        )
        return
    statement = insert_for(session, AppUserMapping)
    statement = statement.on_conflict_do_update(
        index_elements=["app_id", "app_user_id"],
        set_={"profile_id": statement.excluded.profile_id},
    )
    await session.exec(statement, params=params)


async def _upsert_devices(session: AsyncSession, rows: Sequence[ProfileRow], now: datetime) -> None:
    params = sorted(
        (
            {
                "app_id": app,
                "profile_id": r.id,
                "provider": provider,
                "token": token,
                "environment": environment,
                "state": DeviceState.VALID.value,
                "registered_at": now,
                "created_at": now,
            }
            for r in rows
            for app, provider, token, environment in r.devices
        ),
        key=lambda p: (p["app_id"], p["token"]),
    )
    if not params:
        return
    if _is_postgresql(session):
        await _copy_upsert(
            session,
            "device_import_rows",
            {"app_id": "text", "profile_id": "text", "provider": "text", "token": "text"}
            | {"environment": "text"},
            (
                (p["app_id"], p["profile_id"], p["provider"], p["token"], p["environment"])
                for p in params
            ),
            "INSERT INTO device (app_id, profile_id, provider, token, environment, state, "
            "registered_at, created_at) SELECT app_id, profile_id, provider, token, "
            "environment, 'valid', :now, :now FROM device_import_rows ORDER BY app_id, token "
            "ON CONFLICT (app_id, token) DO UPDATE SET profile_id = excluded.profile_id, "
            "provider = excluded.provider, environment = excluded.environment, "
            "state = 'valid', state_reason = NULL, state_changed_at = NULL, "
            "registered_at = excluded.registered_at",
            now=now,
        )
        return
    statement = insert_for(session, Device)
    statement = statement.on_conflict_do_update(
        index_elements=["app_id", "token"],
        set_={
            "profile_id": statement.excluded.profile_id,
            "provider": statement.excluded.provider,
            "environment": statement.excluded.environment,
            "state": DeviceState.VALID.value,
            "state_reason": None,
            "state_changed_at": None,
            "registered_at": statement.excluded.registered_at,
        },
    )
    await session.exec(statement, params=params)
