"""Apps and their provider credentials (never returned, never logged)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field

from tidings.api.deps import Admin, ReadSession, State, WriteSession
from tidings.api.errors import ERROR_RESPONSES, ApiError
from tidings.push.credentials import ApnsCredentials, FcmCredentials
from tidings.store.apps import set_credentials
from tidings.store.models import App

AppId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]

router = APIRouter(
    prefix="/v1/apps", tags=["apps"], dependencies=[Admin], responses=ERROR_RESPONSES
)


class AppBase(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)


class AppCreate(AppBase):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="the app's slug")
    apns: ApnsCredentials | None = None
    fcm: FcmCredentials | None = None


class AppPublic(AppBase):
    id: str
    platforms: list[str]
    apns: dict[str, Any] | None = Field(description="APNs settings, without the key")
    fcm: dict[str, Any] | None = Field(description="FCM project, without the service account")
    credentials_version: int
    apns_fault: str | None
    fcm_fault: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, app: App) -> AppPublic:
        platforms = [
            name
            for name, config in (("ios", app.apns_config), ("android", app.fcm_config))
            if config
        ]
        return cls(
            id=app.id,
            name=app.name,
            description=app.description,
            platforms=platforms,
            apns=app.apns_config,
            fcm=app.fcm_config,
            credentials_version=app.credentials_version,
            apns_fault=app.apns_fault,
            fcm_fault=app.fcm_fault,
            created_at=app.created_at,
            updated_at=app.updated_at,
        )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_app(body: AppCreate, session: WriteSession, state: State) -> AppPublic:
    if await session.get(App, body.id) is not None:
        raise ApiError(409, "app_exists", f"an app with id {body.id!r} already exists")
    app = App(id=body.id, name=body.name, description=body.description, credentials_version=0)
    set_credentials(app, state.secrets, apns=body.apns, fcm=body.fcm)
    session.add(app)
    await session.commit()
    return AppPublic.of(app)


@router.get("/{app_id}")
async def read_app(app_id: AppId, session: ReadSession) -> AppPublic:
    app = await session.get(App, app_id)
    if app is None:
        raise ApiError(404, "app_not_found", f"no app with id {app_id!r}")
    return AppPublic.of(app)


class AppUpdate(BaseModel):
    """Fields to change; credentials given here replace the stored ones and take effect in
    every worker on its next batch."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    apns: ApnsCredentials | None = None
    fcm: FcmCredentials | None = None


@router.patch("/{app_id}")
async def update_app(
    app_id: AppId, body: AppUpdate, session: WriteSession, state: State
) -> AppPublic:
    app = await session.get(App, app_id)
    if app is None:
        raise ApiError(404, "app_not_found", f"no app with id {app_id!r}")
    if body.name is not None:
        app.name = body.name
    if body.description is not None:
        app.description = body.description
    if body.apns is not None or body.fcm is not None:
        set_credentials(app, state.secrets, apns=body.apns, fcm=body.fcm)
    public = AppPublic.of(app)
    await session.commit()
    return public
