"""User mapping: an app's own user id mapped to a profile id, looked up in both directions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from tidings.api.deps import AppAccess, AppId, ReadSession, WriteSession
from tidings.api.errors import ERROR_RESPONSES, ApiError, responses
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.api.routers.apps import app_or_404
from tidings.api.types import IDENTIFIER, ProfileIdText
from tidings.store.devices import create_missing_profiles
from tidings.store.mappings import find_mapping, list_mappings, map_user, unmap_user
from tidings.store.models import AppUserMapping, Profile
from tidings.store.types import utcnow

AppUserId = Annotated[
    str,
    Path(min_length=1, max_length=256, pattern=IDENTIFIER, description="the app's own user id"),
]

router = APIRouter(
    prefix="/v1/apps/{app_id}/users",
    tags=["user mapping"],
    dependencies=[AppAccess],
    responses=ERROR_RESPONSES,
)


class MappingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile_id: ProfileIdText
    create_profile: bool = Field(
        default=False, description="create the profile (empty) if it does not exist"
    )


class MappingPublic(BaseModel):
    app_id: str
    app_user_id: str
    profile_id: str
    created_at: datetime

    @classmethod
    def of(cls, mapping: AppUserMapping) -> MappingPublic:
        return cls.model_validate(mapping, from_attributes=True)


def not_found(app_id: str, app_user_id: str) -> ApiError:
    return ApiError(404, "mapping_not_found", f"app {app_id!r} has no user {app_user_id!r} mapped")


@router.put("/{app_user_id}", responses=responses(404))
async def map_to_profile(
    app_id: AppId, app_user_id: AppUserId, body: MappingIn, session: WriteSession
) -> MappingPublic:
    """Map the app's user to a profile, or re-map it. An unknown profile is refused (404
    `unknown_profile`) unless `create_profile` is true (it is then created empty)."""
    await app_or_404(session, app_id)
    if body.create_profile:
        await create_missing_profiles(session, [body.profile_id], utcnow())
    elif await session.get(Profile, body.profile_id) is None:
        message = (
            f'no profile {body.profile_id!r} (create it first, or send "create_profile": true)'
        )
        raise ApiError(
            404, "unknown_profile", message, [{"loc": ["body", "profile_id"], "msg": message}]
        )
    mapping = await map_user(
        session, app_id=app_id, app_user_id=app_user_id, profile_id=body.profile_id, now=utcnow()
    )
    answer = MappingPublic.of(mapping)
    await session.commit()
    return answer


@router.get("/{app_user_id}")
async def read(app_id: AppId, app_user_id: AppUserId, session: ReadSession) -> MappingPublic:
    """The profile the app's user is mapped to."""
    mapping = await find_mapping(session, app_id, app_user_id)
    if mapping is None:
        raise not_found(app_id, app_user_id)
    return MappingPublic.of(mapping)


@router.delete("/{app_user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def unmap(app_id: AppId, app_user_id: AppUserId, session: WriteSession) -> Response:
    if not await unmap_user(session, app_id, app_user_id):
        raise not_found(app_id, app_user_id)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("")
async def list_all(
    app_id: AppId,
    session: ReadSession,
    profile_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            pattern=IDENTIFIER,
            description="only this profile's users (the reverse lookup)",
        ),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[MappingPublic]:
    """The app's user mappings, in app user id order."""
    await app_or_404(session, app_id)
    page = await list_mappings(
        session,
        app_id=app_id,
        profile_id=profile_id,
        after=decode_cursor(cursor, str),
        limit=limit,
    )
    return Page(
        items=[MappingPublic.of(m) for m in page.items],
        next_cursor=encode_cursor(page.next_after),
    )
