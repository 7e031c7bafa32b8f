"""Profiles: the people journeys address, found by id, email or phone."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.models import AppUserMapping, Device, Profile
from tidings.store.pages import Page, keyset

PERSONAL_FIELDS = ("email", "phone", "timezone", "locale", "attributes")


class ContactTaken(ValueError):
    """Another profile has this email or phone (both are unique)."""

    def __init__(self, field: str) -> None:
        super().__init__(f"another profile has this {field}")
        self.field = field


def normalise_email(email: str | None) -> str | None:
    """Emails are kept lower-case so a lookup finds them however they are written."""
    return email.strip().lower() if email is not None else None


async def _check_contacts_free(
    session: AsyncSession, profile_id: str, values: Mapping[str, Any]
) -> None:
    for field in ("email", "phone"):
        value = values.get(field)
        if value is None:
            continue
        column = col(Profile.email) if field == "email" else col(Profile.phone)
        owner = (await session.exec(select(col(Profile.id)).where(column == value))).first()
        if owner is not None and owner != profile_id:
            raise ContactTaken(field)


async def save_profile(
    session: AsyncSession,
    profile_id: str,
    values: Mapping[str, Any],
    now: datetime,
    *,
    replace: bool,
) -> tuple[Profile, bool]:
    """Create the profile or change it. ``replace`` sets every personal field (absent ones to
    their empty value); otherwise only the given fields change, and ``attributes`` are merged
    key by key (a key set to null is removed), as in a JSON merge patch. Returns the profile
    and whether it was created."""
    values = dict(values)
    if "email" in values:
        values["email"] = normalise_email(values["email"])
    await _check_contacts_free(session, profile_id, values)
    profile = await session.get(Profile, profile_id)
    created = profile is None
    if profile is None:
        profile = Profile(id=profile_id, attributes={}, created_at=now)
        session.add(profile)
    if replace:
        for field in PERSONAL_FIELDS:
            setattr(profile, field, values.get(field, {} if field == "attributes" else None))
    else:
        for field, value in values.items():
            if field == "attributes":
                merged = dict(profile.attributes or {})
                for key, item in (value or {}).items():
                    if item is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = item
                profile.attributes = merged
            else:
                setattr(profile, field, value)
    profile.updated_at = now
    await session.flush()
    return profile, created


async def find_by_contact(
    session: AsyncSession, *, email: str | None = None, phone: str | None = None
) -> Profile | None:
    statement = select(Profile)
    if email is not None:
        statement = statement.where(col(Profile.email) == normalise_email(email))
    if phone is not None:
        statement = statement.where(col(Profile.phone) == phone)
    return (await session.exec(statement)).first()


async def list_profiles(session: AsyncSession, *, after: str | None, limit: int) -> Page[Profile]:
    return await keyset(session, select(Profile), col(Profile.id), after, limit)


async def known_to_app(session: AsyncSession, app_id: str, profile_id: str) -> bool:
    """Whether the app knows the profile: one of the app's devices or user mappings names it."""
    for statement in (
        select(col(Device.id))
        .where(col(Device.app_id) == app_id)
        .where(col(Device.profile_id) == profile_id),
        select(col(AppUserMapping.app_user_id))
        .where(col(AppUserMapping.app_id) == app_id)
        .where(col(AppUserMapping.profile_id) == profile_id),
    ):
        if (await session.exec(statement.limit(1))).first() is not None:
            return True
    return False
