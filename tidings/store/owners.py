"""Whose device or event it is: a profile named by its id, or by the app's own user id
through the user mapping. Nothing is created unless the caller asks (``create_profile``):
an unknown profile or app user is an error the caller sees.

Resolving is split in two so a batch keeps the global lock order: :func:`plan_owner` only
reads; :func:`apply_owners` then creates the missing profiles in one sorted statement and
the new mappings in (app, user) order, before the caller writes its devices.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.store.devices import create_missing_profiles
from tidings.store.mappings import find_mapping, map_user
from tidings.store.models import Profile


@dataclass(frozen=True)
class OwnerRef:
    """How a request names the owner: ``profile_id``, ``app_user_id`` or both (the user is
    then mapped to that profile, if it is not mapped yet)."""

    profile_id: str | None = None
    app_user_id: str | None = None
    create_profile: bool = False


class OwnerUnknown(LookupError):
    """The named profile or app user does not exist, and the caller did not ask to create it.
    ``code``: unknown_profile or unknown_app_user; ``field``: the request's field."""

    def __init__(self, code: str, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class OwnerConflict(ValueError):
    """The app user is mapped to another profile than the one named with it."""

    field = "app_user_id"


@dataclass(frozen=True)
class Owner:
    profile_id: str
    create: bool = False  # the profile is created
    map_user: str | None = None  # this app user is mapped to it


def new_profile_id() -> str:
    return f"p-{uuid.uuid4().hex}"


async def plan_owner(session: AsyncSession, app_id: str, ref: OwnerRef) -> Owner:
    """The owner the reference names (read only); raises OwnerUnknown or OwnerConflict."""
    if ref.app_user_id is not None:
        mapping = await find_mapping(session, app_id, ref.app_user_id)
        if mapping is not None:
            if ref.profile_id is not None and mapping.profile_id != ref.profile_id:
                raise OwnerConflict(
                    f"app user {ref.app_user_id!r} is mapped to another profile; re-map it "
                    f"with PUT /v1/apps/{app_id}/users/{{app_user_id}} first"
                )
            return Owner(mapping.profile_id)
        if ref.profile_id is None:
            if not ref.create_profile:
                raise OwnerUnknown(
                    "unknown_app_user",
                    "app_user_id",
                    f"app {app_id!r} has no user {ref.app_user_id!r} mapped (map it with "
                    'PUT /v1/apps/{app}/users/{app_user_id}, or send "create_profile": true)',
                )
            return Owner(new_profile_id(), create=True, map_user=ref.app_user_id)
    assert ref.profile_id is not None
    if await session.get(Profile, ref.profile_id) is None:
        if not ref.create_profile:
            raise OwnerUnknown(
                "unknown_profile",
                "profile_id",
                f"no profile {ref.profile_id!r} (create it with PUT /v1/profiles/{{id}} or "
                'POST /v1/profiles/import, or send "create_profile": true)',
            )
        return Owner(ref.profile_id, create=True, map_user=ref.app_user_id)
    return Owner(ref.profile_id, map_user=ref.app_user_id)


async def apply_owners(
    session: AsyncSession, app_id: str, owners: Sequence[Owner], now: datetime
) -> None:
    """Create the planned profiles (one sorted statement), then map the planned users."""
    await create_missing_profiles(session, [o.profile_id for o in owners if o.create], now)
    for app_user_id, profile_id in sorted(
        {(o.map_user, o.profile_id) for o in owners if o.map_user is not None}
    ):
        await map_user(
            session, app_id=app_id, app_user_id=app_user_id, profile_id=profile_id, now=now
        )
