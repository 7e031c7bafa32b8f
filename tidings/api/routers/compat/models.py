"""Request and answer bodies of the compatible surface, in the original's field names."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tidings.api.types import LABEL, ProfileIdText
from tidings.store.models import InteractionKind, Provider, RegistrationFailure, RegistrationStatus

MAX_BATCH = 100
# long tokens are answered DeviceTokenTooLong, not refused: the bound only caps the request
RawToken = Annotated[str, Field(min_length=1, max_length=65_536)]
Credential = Annotated[str, Field(min_length=1, max_length=200, pattern=LABEL)]
AppIdText = Annotated[
    str, Field(min_length=1, max_length=64, pattern=LABEL, description="the tidings app id")
]


class _Compat(BaseModel):
    # Unknown fields are ignored, as the original's clients may send more than it reads.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Authenticated(_Compat):
    MobileAppId: AppIdText
    ApiToken: Credential = Field(description="one of the app's tidings API keys")

    @property
    def app_id(self) -> str:
        # tidings app ids are lower-case; Customer Insights ids are GUIDs in either case
        return self.MobileAppId.lower()


class DeviceRegistration(Authenticated):
    """Exactly one of `ApnsDeviceToken` and `FcmDeviceToken`."""

    UserId: ProfileIdText = Field(description="the profile id")
    ApnsDeviceToken: RawToken | None = None
    FcmDeviceToken: RawToken | None = None

    @model_validator(mode="after")
    def _one_token(self) -> DeviceRegistration:
        if (self.ApnsDeviceToken is None) == (self.FcmDeviceToken is None):
            raise ValueError("give exactly one of ApnsDeviceToken and FcmDeviceToken")
        return self

    @property
    def provider(self) -> Provider:
        return Provider.APNS if self.ApnsDeviceToken is not None else Provider.FCM

    @property
    def token(self) -> str:
        return self.ApnsDeviceToken or self.FcmDeviceToken or ""


class RegistrationAccepted(_Compat):
    RegistrationRequestId: str | None = Field(
        default=None, description="with `x-ms-track-registration: true` only"
    )


class StatusRequest(Authenticated):
    RegistrationRequestIds: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1, max_length=MAX_BATCH
    )


class RegistrationState(_Compat):
    RegistrationRequestId: str
    Status: RegistrationStatus
    FailureReason: RegistrationFailure | None = None


class CallbackBody(_Compat):
    Status: RegistrationStatus
    Signature: str = Field(
        description="base64 of HMAC-SHA256 over the callback URL, keyed with the API token"
    )
    FailureReason: RegistrationFailure | None = None


class DeviceCleanup(Authenticated):
    UserId: ProfileIdText
    DeviceToken: RawToken | None = Field(
        default=None, description="one device; without it, all of the user's devices"
    )


# 1 = opened, 0 = clicked; the original's sample apps also send "1", "0" or the names
STATUS_KINDS = {
    "1": InteractionKind.OPENED,
    "0": InteractionKind.CLICKED,
    "opened": InteractionKind.OPENED,
    "clicked": InteractionKind.CLICKED,
}


class InteractionEvent(_Compat):
    TrackingId: Annotated[str, Field(min_length=1, max_length=64, pattern=LABEL)]
    DeviceToken: RawToken
    PushNotificationStatus: int | str = Field(
        description='1 = opened, 0 = clicked (also accepted: "1", "0", "Opened", "Clicked")'
    )

    @field_validator("PushNotificationStatus")
    @classmethod
    def _known_status(cls, value: Any) -> Any:
        if str(value).strip().lower() not in STATUS_KINDS:
            raise ValueError("must be 1 (opened) or 0 (clicked)")
        return value

    @property
    def kind(self) -> InteractionKind:
        return STATUS_KINDS[str(self.PushNotificationStatus).strip().lower()]
