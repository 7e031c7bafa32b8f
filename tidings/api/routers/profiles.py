"""Profiles: the people journeys address. Erasing one keeps only anonymous counts."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from tidings.api.deps import Admin, ReadSession, WriteSession
from tidings.api.errors import ERROR_RESPONSES, ApiError, responses
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.api.routers.erasures import ErasurePublic
from tidings.api.types import (
    IDENTIFIER,
    Attributes,
    LocaleTag,
    PhoneNumber,
    ProfileIdText,
    TimeZoneName,
)
from tidings.store.erasure import erase_profile
from tidings.store.models import Profile
from tidings.store.profiles import ContactTaken, find_by_contact, list_profiles, save_profile
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

ProfileId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=IDENTIFIER, description="the profile's id")
]
Email = Annotated[EmailStr, Field(max_length=320)]

router = APIRouter(
    prefix="/v1/profiles", tags=["profiles"], dependencies=[Admin], responses=ERROR_RESPONSES
)


class ProfileFields(BaseModel):
    email: Email | None = Field(default=None, description="unique; stored lower-case")
    phone: PhoneNumber | None = Field(default=None, description="unique, E.164")
    timezone: TimeZoneName | None = None
    locale: LocaleTag | None = None


class ProfileUpsert(ProfileFields):
    """Every field of the profile: absent fields are emptied."""

    model_config = ConfigDict(extra="forbid")

    attributes: Attributes = Field(default_factory=dict)


class ProfileCreate(ProfileUpsert):
    id: ProfileIdText


class ProfilePatch(ProfileFields):
    """The fields to change. `attributes` are merged key by key; a key set to null is
    removed (JSON merge patch)."""

    model_config = ConfigDict(extra="forbid")

    attributes: Attributes | None = None


class ProfilePublic(BaseModel):
    id: str
    email: str | None
    phone: str | None
    timezone: str | None
    locale: str | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ProfileLookup(BaseModel):
    """Exactly one of `email` and `phone`."""

    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    phone: PhoneNumber | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ProfileLookup:
        if (self.email is None) == (self.phone is None):
            raise ValueError("give exactly one of email and phone")
        return self


def public(profile: Profile) -> ProfilePublic:
    return ProfilePublic.model_validate(profile, from_attributes=True)


def not_found(profile_id: str) -> ApiError:
    return ApiError(404, "profile_not_found", f"no profile with id {profile_id!r}")


async def _save(
    session: WriteSession, profile_id: str, values: dict[str, Any], *, replace: bool
) -> tuple[ProfilePublic, bool]:
    try:
        profile, created = await save_profile(
            session, profile_id, values, utcnow(), replace=replace
        )
    except ContactTaken as error:
        raise ApiError(
            409,
            f"{error.field}_taken",
            str(error),
            [{"loc": ["body", error.field], "msg": str(error)}],
        ) from None
    answer = public(profile)
    await session.commit()
    return answer, created


@router.post("", status_code=status.HTTP_201_CREATED, responses=responses(409))
async def create_profile(body: ProfileCreate, session: WriteSession) -> ProfilePublic:
    if await session.get(Profile, body.id) is not None:
        raise ApiError(409, "profile_exists", f"a profile with id {body.id!r} already exists")
    answer, _ = await _save(session, body.id, body.model_dump(exclude={"id"}), replace=True)
    return answer


@router.put("/{profile_id}", responses=responses(409))
async def upsert_profile(
    profile_id: ProfileId, body: ProfileUpsert, session: WriteSession
) -> ProfilePublic:
    """Create the profile, or replace every field of it."""
    answer, _ = await _save(session, profile_id, body.model_dump(), replace=True)
    return answer


@router.patch("/{profile_id}", responses=responses(409))
async def patch_profile(
    profile_id: ProfileId, body: ProfilePatch, session: WriteSession
) -> ProfilePublic:
    if await session.get(Profile, profile_id) is None:
        raise not_found(profile_id)
    values = {field: getattr(body, field) for field in body.model_fields_set}
    answer, _ = await _save(session, profile_id, values, replace=False)
    return answer


@router.get("/{profile_id}")
async def read_profile(profile_id: ProfileId, session: ReadSession) -> ProfilePublic:
    profile = await session.get(Profile, profile_id)
    if profile is None:
        raise not_found(profile_id)
    return public(profile)


@router.get("")
async def list_all(
    session: ReadSession, limit: Limit = 50, cursor: Cursor = None
) -> Page[ProfilePublic]:
    """Profiles in id order."""
    page = await list_profiles(session, after=decode_cursor(cursor, str), limit=limit)
    return Page(items=[public(p) for p in page.items], next_cursor=encode_cursor(page.next_after))


@router.post("/lookup")
async def lookup(body: ProfileLookup, session: ReadSession) -> ProfilePublic:
    """The profile with this email or phone. (A POST, so the address stays out of URLs and
    access logs.)"""
    profile = await find_by_contact(session, email=body.email, phone=body.phone)
    if profile is None:
        field = "email" if body.email is not None else "phone"
        raise ApiError(404, "profile_not_found", f"no profile has this {field}")
    return public(profile)


@router.delete("/{profile_id}")
async def erase(profile_id: ProfileId, session: WriteSession) -> ErasurePublic:
    """Erase the profile: its personal fields, devices and user mappings are deleted; the send
    ledger, interactions and journey records keep their counts under an opaque id."""
    erasure = await erase_profile(session, profile_id, utcnow())
    if erasure is None:
        raise not_found(profile_id)
    answer = ErasurePublic.of(erasure)
    await session.commit()
    log.info("profile erased (erasure %s)", erasure.id)
    return answer
