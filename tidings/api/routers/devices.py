"""Devices: mobile backends register, refresh and clean up each push token of a profile.

Registration is an idempotent upsert on (app, token): registering again refreshes the token
(and its staleness clock), and a token registered for another profile moves to this one, so
one device never gets a push twice.

A token of a platform the app has no credentials for is kept, with a warning in the answer:
nothing is sent to it until the app gets them (a backend often registers tokens before ops
have added the second platform's key, and refusing would lose them).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.api.deps import AppAccess, AppId, ReadSession, State, WriteSession
from tidings.api.errors import ERROR_RESPONSES, ApiError, ErrorBody, responses
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.api.routers.apps import PROVIDER_NAMES, app_or_404, sends_to
from tidings.api.types import IDENTIFIER, AppUserIdText, ProfileIdText
from tidings.push.masking import mask_token
from tidings.store.devices import (
    DeviceView,
    InvalidToken,
    ListedState,
    Registration,
    TokenNotRegistered,
    check_token,
    clean_up,
    list_devices,
    refresh_token,
    register_device,
    register_devices,
    remove_device,
    view_of,
)
from tidings.store.models import App, Device, Provider
from tidings.store.owners import (
    Owner,
    OwnerConflict,
    OwnerRef,
    OwnerUnknown,
    apply_owners,
    plan_owner,
)
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

MAX_BATCH = 100
DeviceId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the device's id")]
Token = Annotated[str, Field(min_length=1, max_length=4096)]

router = APIRouter(
    prefix="/v1/apps/{app_id}/devices",
    tags=["devices"],
    dependencies=[AppAccess],
    responses=ERROR_RESPONSES,
)


class DeviceRegistration(BaseModel):
    """The device's owner is named by `profile_id`, by `app_user_id` (the app's own user id,
    through the user mapping), or by both (the user is then mapped to that profile). An
    unknown one is refused (404 `unknown_profile` / `unknown_app_user`) unless
    `create_profile` is true."""

    model_config = ConfigDict(extra="forbid")

    profile_id: ProfileIdText | None = None
    app_user_id: AppUserIdText | None = Field(
        default=None, description="the app's own user id, mapped to a profile"
    )
    create_profile: bool = Field(
        default=False,
        description="create the profile (empty) if it does not exist; with `app_user_id` "
        "alone, a new profile (id `p-<hex>`) is created and the user mapped to it",
    )
    provider: Provider = Field(description="apns for iOS tokens, fcm for Android tokens")
    token: Token = Field(
        description="APNs: even-length hex, 64 to 200 characters; FCM: no whitespace, at most 4 KB"
    )
    environment: Literal["production", "sandbox"] | None = Field(
        default=None, description="APNs only: the gateway the token belongs to"
    )

    @model_validator(mode="after")
    def _named_owner(self) -> DeviceRegistration:
        if self.profile_id is None and self.app_user_id is None:
            raise ValueError("give profile_id or app_user_id (or both)")
        return self

    @property
    def owner(self) -> OwnerRef:
        return OwnerRef(self.profile_id, self.app_user_id, self.create_profile)


class DevicePublic(BaseModel):
    id: int
    app_id: str
    profile_id: str
    provider: Provider
    token: str
    environment: str | None
    state: ListedState = Field(
        description="valid; invalid (the provider said it is gone); quarantined (the provider "
        "doubted it); stale (not refreshed for the configured number of days). Only valid "
        "devices are targeted."
    )
    state_reason: str | None
    state_changed_at: datetime | None
    registered_at: datetime = Field(description="last registration or refresh")

    @classmethod
    def of(cls, view: DeviceView) -> DevicePublic:
        device = view.device
        return cls(
            id=int(device.id or 0),
            app_id=device.app_id,
            profile_id=device.profile_id,
            provider=Provider(device.provider),
            token=device.token,
            environment=device.environment,
            state=view.state,
            state_reason=view.reason,
            state_changed_at=view.since,
            registered_at=device.registered_at,
        )


class RegistrationWarning(BaseModel):
    code: Literal["provider_not_configured"] = Field(
        description="provider_not_configured: the app has no credentials for the token's "
        "platform; the token is kept, but nothing is sent to it until the app gets them"
    )
    message: str


class DeviceRegistered(DevicePublic):
    warnings: list[RegistrationWarning] = Field(
        default_factory=list, description="what makes the device unreachable for now"
    )


def _warnings(app: App, provider: Provider) -> list[RegistrationWarning]:
    if sends_to(app, provider):
        return []
    name = PROVIDER_NAMES[provider.value]
    return [
        RegistrationWarning(
            code="provider_not_configured",
            message=f"app {app.id!r} has no {name} credentials: the token is kept, but "
            "nothing is sent to it until the app gets them",
        )
    ]


def _stale_after(state: State) -> timedelta:
    return timedelta(days=state.settings.stale_after_days)


def _public(device: Device, state: State) -> DevicePublic:
    return DevicePublic.of(view_of(device, _stale_after(state), utcnow()))


def _invalid_token(error: InvalidToken, loc: list[str]) -> ApiError:
    return ApiError(422, "invalid_token", str(error), [{"loc": loc, "msg": str(error)}])


def owner_error(error: OwnerUnknown | OwnerConflict, loc: list[str | int]) -> ApiError:
    if isinstance(error, OwnerConflict):
        status_code, code, field = 409, "app_user_mapped_elsewhere", error.field
    else:
        status_code, code, field = 404, error.code, error.field
    return ApiError(status_code, code, str(error), [{"loc": [*loc, field], "msg": str(error)}])


async def _register(session: AsyncSession, app_id: str, body: DeviceRegistration) -> Device:
    now = utcnow()
    check_token(body.provider, body.token)  # a malformed request is answered as such first
    try:
        owner = await plan_owner(session, app_id, body.owner)
    except (OwnerUnknown, OwnerConflict) as error:
        raise owner_error(error, ["body"]) from None
    await apply_owners(session, app_id, [owner], now)
    device = await register_device(
        session,
        app_id=app_id,
        profile_id=owner.profile_id,
        provider=body.provider,
        token=body.token,
        environment=body.environment,
        now=now,
    )
    log.debug("app %s: token %s registered", app_id, mask_token(device.token))
    return device


@router.post("", responses=responses(404, 409))
async def register(
    app_id: AppId, body: DeviceRegistration, session: WriteSession, state: State
) -> DeviceRegistered:
    """Register a device (idempotent on app and token; see above). A token of a platform the
    app has no credentials for is kept and answered with a warning."""
    app = await app_or_404(session, app_id)
    try:
        device = await _register(session, app_id, body)
    except InvalidToken as error:
        raise _invalid_token(error, ["body", "token"]) from None
    answer = DeviceRegistered(
        **_public(device, state).model_dump(), warnings=_warnings(app, body.provider)
    )
    await session.commit()
    return answer


class BatchItem:
    """A batch item, checked on its own by the route (so one bad item does not refuse the
    whole batch) and documented as a :class:`DeviceRegistration`."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.any_schema()

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(DeviceRegistration.__pydantic_core_schema__)


class DeviceBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[BatchItem] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="each item is checked on its own: an invalid one is answered in its place",
    )


class BatchItemAnswer(BaseModel):
    index: int = Field(description="the item's position in the request")
    status: Literal["registered", "failed"]
    device: DevicePublic | None = None
    error: ErrorBody | None = Field(
        default=None,
        description="why it failed: code invalid_token (the token's form), invalid_item (a "
        "field of the item; details name each), unknown_profile or unknown_app_user (not "
        "created: the item did not ask for it), app_user_mapped_elsewhere, or conflict (the "
        "store refused it)",
    )
    field: str | None = Field(
        default=None, description="the item's field at fault (the first, if several)"
    )
    warnings: list[RegistrationWarning] = Field(
        default_factory=list, description="registered, but unreachable for now: why"
    )


class BatchAnswer(BaseModel):
    registered: int
    failed: int
    items: list[BatchItemAnswer] = Field(description="one answer per item, in request order")


def _checked(index: int, raw: Any) -> DeviceRegistration | BatchItemAnswer:
    """The item as a registration with a well-formed token, or its failure."""
    try:
        item = DeviceRegistration.model_validate(raw)
    except ValidationError as error:
        problems = [
            {"loc": ["body", "items", index, *(str(p) for p in e["loc"])], "msg": e["msg"]}
            for e in error.errors(include_input=False, include_url=False)
        ]
        field = str(problems[0]["loc"][3]) if len(problems[0]["loc"]) > 3 else None
        code = "invalid_token" if field == "token" else "invalid_item"
        message = "; ".join(
            f"{'.'.join(map(str, p['loc'][3:])) or 'item'}: {p['msg']}" for p in problems
        )
        return _failed(index, code, message, field, problems)
    try:
        token = check_token(item.provider, item.token)
    except InvalidToken as error:
        problem = {"loc": ["body", "items", index, "token"], "msg": str(error)}
        return _failed(index, "invalid_token", str(error), "token", [problem])
    return item.model_copy(update={"token": token})


@router.post("/batch")
async def register_batch(
    app_id: AppId, body: DeviceBatch, session: WriteSession, state: State
) -> BatchAnswer:
    """Register up to 100 devices, answering per item: an item that fails (a malformed token,
    profile id or provider) is answered in its place and the others are registered. A
    malformed request (not a list of items, more than 100) is refused as a whole. An item of
    a platform the app has no credentials for is registered with a warning. Concurrent
    batches never deadlock: their writes take locks in one global order."""
    app = await app_or_404(session, app_id)
    now = utcnow()
    answers: dict[int, BatchItemAnswer] = {}
    good: list[tuple[int, DeviceRegistration, Owner]] = []
    # an app user created by an earlier item is the same profile for a later one
    planned: dict[str, Owner] = {}
    for index, raw in enumerate(body.items):
        checked = _checked(index, raw)
        if isinstance(checked, BatchItemAnswer):
            answers[index] = checked
            continue
        user = checked.app_user_id
        try:
            owner = (
                Owner(planned[user].profile_id)
                if user is not None and user in planned
                else await plan_owner(session, app_id, checked.owner)
            )
        except (OwnerUnknown, OwnerConflict) as error:
            problem = owner_error(error, ["body", "items", index])
            answers[index] = _failed(
                index, problem.code, problem.message, error.field, problem.details
            )
            continue
        if user is not None:
            planned.setdefault(user, owner)
        good.append((index, checked, owner))
    await apply_owners(session, app_id, [owner for _, _, owner in good], now)
    devices = await register_devices(
        session,
        [
            Registration(app_id, owner.profile_id, item.provider, item.token, item.environment)
            for _, item, owner in good
        ],
        now,
    )
    for (index, _, _), device in zip(good, devices, strict=True):
        if device is None:
            answers[index] = _failed(index, "conflict", "the device conflicts with stored data")
            continue
        log.debug("app %s: token %s registered", app_id, mask_token(device.token))
        answers[index] = BatchItemAnswer(
            index=index,
            status="registered",
            device=_public(device, state),
            warnings=_warnings(app, Provider(device.provider)),
        )
    await session.commit()
    items = [answers[i] for i in range(len(body.items))]
    registered = sum(1 for a in items if a.status == "registered")
    return BatchAnswer(registered=registered, failed=len(items) - registered, items=items)


def _failed(
    index: int,
    code: str,
    message: str,
    field: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> BatchItemAnswer:
    return BatchItemAnswer(
        index=index,
        status="failed",
        error=ErrorBody(code=code, message=message, details=details or []),
        field=field,
    )


class TokenRefresh(BaseModel):
    model_config = ConfigDict(extra="forbid")

    old_token: Token
    new_token: Token


@router.post("/refresh")
async def refresh(
    app_id: AppId, body: TokenRefresh, session: WriteSession, state: State
) -> DevicePublic:
    """Replace a token by the one the provider issued in its place; the device keeps its
    profile. If the new token was registered already, that device is the one kept."""
    await app_or_404(session, app_id)
    try:
        device = await refresh_token(
            session,
            app_id=app_id,
            old_token=body.old_token,
            new_token=body.new_token,
            now=utcnow(),
        )
    except TokenNotRegistered:
        raise ApiError(
            404, "token_not_registered", "the old token is not registered for this app"
        ) from None
    except InvalidToken as error:
        raise _invalid_token(error, ["body", "new_token"]) from None
    answer = _public(device, state)
    await session.commit()
    log.debug("app %s: token refreshed to %s", app_id, mask_token(device.token))
    return answer


@router.get("")
async def list_all(
    app_id: AppId,
    session: ReadSession,
    state: State,
    profile_id: Annotated[
        str | None,
        Query(min_length=1, max_length=128, pattern=IDENTIFIER, description="one profile's"),
    ] = None,
    device_state: Annotated[
        ListedState | None, Query(alias="state", description="only devices in this state")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DevicePublic]:
    """The app's devices (of one profile, or all) with their state, in id order."""
    await app_or_404(session, app_id)
    page = await list_devices(
        session,
        app_id=app_id,
        profile_id=profile_id,
        state=device_state,
        stale_after=_stale_after(state),
        now=utcnow(),
        after=decode_cursor(cursor, int),
        limit=limit,
    )
    return Page(
        items=[DevicePublic.of(view) for view in page.items],
        next_cursor=encode_cursor(page.next_after),
    )


@router.get("/{device_id}")
async def read(
    app_id: AppId, device_id: DeviceId, session: ReadSession, state: State
) -> DevicePublic:
    device = await session.get(Device, device_id)
    if device is None or device.app_id != app_id:
        raise ApiError(404, "device_not_found", f"app {app_id!r} has no device {device_id}")
    return _public(device, state)


@router.delete("/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove(app_id: AppId, device_id: DeviceId, session: WriteSession) -> Response:
    """Clean up one device by its id."""
    if not await remove_device(session, app_id, device_id):
        raise ApiError(404, "device_not_found", f"app {app_id!r} has no device {device_id}")
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class Cleanup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile_id: ProfileIdText
    token: Token | None = Field(
        default=None, description="one device; without it, all of the profile's devices"
    )


class CleanupAnswer(BaseModel):
    removed: int = Field(description="devices removed")


class CleanupBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[Cleanup] = Field(min_length=1, max_length=MAX_BATCH)


class CleanupItemAnswer(CleanupAnswer):
    index: int


class CleanupBatchAnswer(CleanupAnswer):
    items: list[CleanupItemAnswer] = Field(description="one answer per item, in request order")


async def _clean_up(session: AsyncSession, app_id: str, item: Cleanup) -> int:
    return await clean_up(session, app_id=app_id, profile_id=item.profile_id, token=item.token)


@router.post("/cleanup")
async def cleanup(app_id: AppId, body: Cleanup, session: WriteSession) -> CleanupAnswer:
    """Remove one of the profile's devices for this app (by token), or all of them. A token
    that has since moved to another profile is left with that profile."""
    await app_or_404(session, app_id)
    removed = await _clean_up(session, app_id, body)
    await session.commit()
    return CleanupAnswer(removed=removed)


@router.post("/cleanup/batch")
async def cleanup_batch(
    app_id: AppId, body: CleanupBatch, session: WriteSession
) -> CleanupBatchAnswer:
    """Up to 100 cleanups in one transaction, answered per item."""
    await app_or_404(session, app_id)
    items = [
        CleanupItemAnswer(index=index, removed=await _clean_up(session, app_id, item))
        for index, item in enumerate(body.items)
    ]
    await session.commit()
    return CleanupBatchAnswer(removed=sum(i.removed for i in items), items=items)
