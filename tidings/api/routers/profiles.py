"""Profiles: the people journeys address."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from tidings.api.deps import Admin, ReadSession, WriteSession
from tidings.api.errors import ERROR_RESPONSES, ApiError
from tidings.store.models import Profile
from tidings.store.types import utcnow

ProfileId = Annotated[str, Path(min_length=1, max_length=128)]

router = APIRouter(
    prefix="/v1/profiles", tags=["profiles"], dependencies=[Admin], responses=ERROR_RESPONSES
)


class ProfileBase(BaseModel):
    email: EmailStr | None = None
    phone: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164")
    timezone: str | None = Field(default=None, max_length=64, description="IANA, e.g. Europe/Paris")
    locale: str | None = Field(default=None, max_length=35, description="BCP 47, e.g. fr-FR")
    attributes: dict[str, Any] = Field(default_factory=dict)


class ProfileUpsert(ProfileBase):
    model_config = ConfigDict(extra="forbid")


class ProfilePublic(ProfileBase):
    id: str
    created_at: datetime
    updated_at: datetime


def public(profile: Profile) -> ProfilePublic:
    return ProfilePublic.model_validate(profile, from_attributes=True)


@router.put("/{profile_id}")
async def upsert_profile(
    profile_id: ProfileId, body: ProfileUpsert, session: WriteSession
) -> ProfilePublic:
    profile = await session.get(Profile, profile_id)
    if profile is None:
        profile = Profile(id=profile_id)
        session.add(profile)
    for field, value in body.model_dump().items():
        setattr(profile, field, value)
    profile.updated_at = utcnow()
    await session.commit()
    return public(profile)


@router.get("/{profile_id}")
async def read_profile(profile_id: ProfileId, session: ReadSession) -> ProfilePublic:
    profile = await session.get(Profile, profile_id)
    if profile is None:
        raise ApiError(404, "profile_not_found", f"no profile with id {profile_id!r}")
    return public(profile)
