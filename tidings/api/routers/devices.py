"""Device registration: mobile backends register each push token for a profile."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from tidings.api.deps import Admin, WriteSession
from tidings.api.errors import ERROR_RESPONSES, ApiError
from tidings.api.routers.apps import AppId
from tidings.store.devices import InvalidToken, register_device
from tidings.store.models import App, Device, Provider
from tidings.store.types import utcnow

router = APIRouter(
    prefix="/v1/apps/{app_id}/devices",
    tags=["devices"],
    dependencies=[Admin],
    responses=ERROR_RESPONSES,
)


class DeviceRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile_id: str = Field(min_length=1, max_length=128)
    provider: Provider = Field(description="apns for iOS tokens, fcm for Android tokens")
    token: str = Field(min_length=1, max_length=4096)
    environment: Literal["production", "sandbox"] | None = Field(
        default=None, description="APNs only: the gateway the token belongs to"
    )


class DevicePublic(BaseModel):
    id: int
    app_id: str
    profile_id: str
    provider: Provider
    token: str
    environment: str | None
    state: str
    state_reason: str | None
    state_changed_at: datetime | None
    registered_at: datetime

    @classmethod
    def of(cls, device: Device) -> DevicePublic:
        return cls.model_validate(device, from_attributes=True)


@router.post("", status_code=status.HTTP_200_OK)
async def register(app_id: AppId, body: DeviceRegistration, session: WriteSession) -> DevicePublic:
    """Idempotent on (app, token): registering again refreshes the token, and a token
    registered for another profile moves to this one."""
    if await session.get(App, app_id) is None:
        raise ApiError(404, "app_not_found", f"no app with id {app_id!r}")
    try:
        device = await register_device(
            session,
            app_id=app_id,
            profile_id=body.profile_id,
            provider=body.provider,
            token=body.token,
            environment=body.environment,
            now=utcnow(),
        )
    except InvalidToken as error:
        raise ApiError(
            422, "invalid_token", str(error), [{"loc": ["body", "token"], "msg": str(error)}]
        ) from None
    public = DevicePublic.of(device)
    await session.commit()
    return public
