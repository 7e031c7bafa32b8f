"""Device registration, its status call, its signed callback, and cleanup.

Registration answers 202 as soon as the request is well formed. tidings then stores the
device in the same request (validating the token's form; it sends no "dry run" push), so a
tracked registration's status is final when the 202 arrives. An invalid ``ApiToken`` (or an
unknown ``MobileAppId``) stores nothing and leaves the status Pending, as the original does
on purpose: the answer never tells a caller whether a key exists.

A callback URL must reach a public address unless ops allow-list it (see
:mod:`tidings.api.routers.compat.callbacks`). A batch writes its devices in the same global
lock order as the native batch (profiles first, then devices by app and token), so
concurrent batches never deadlock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Header, Response, status
from pydantic import Field
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.api.deps import State, WriteSession
from tidings.api.errors import ApiError
from tidings.api.routers.compat.callbacks import (
    Callback,
    CallbackPolicy,
    check_callback_url,
    post_callback,
)
from tidings.api.routers.compat.models import (
    MAX_BATCH,
    CallbackBody,
    DeviceCleanup,
    DeviceRegistration,
    RegistrationAccepted,
    RegistrationState,
    StatusRequest,
)
from tidings.api.routers.compat.route import BAD_REQUEST, CompatRoute, OrgId
from tidings.push.masking import mask_token
from tidings.store.devices import (
    InvalidToken,
    Registration,
    check_token,
    clean_up,
    register_devices,
)
from tidings.store.keys import key_valid_for
from tidings.store.models import RegistrationFailure, RegistrationStatus
from tidings.store.registrations import outcomes, record_outcome
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

# an HTTP header name (RFC 9110 token); values may not break the header block
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
FORBIDDEN_IN_VALUES = ("\r", "\n", "\x00")

router = APIRouter(
    prefix="/pushdeviceregistration/devices",
    tags=["compat: Customer Insights - Journeys"],
    route_class=CompatRoute,
    responses=BAD_REQUEST,
)

Track = Annotated[
    str | None,
    Header(
        alias="x-ms-track-registration",
        max_length=10,
        description="`true`: keep the outcome for the status call and answer its id",
    ),
]
CallbackUrl = Annotated[
    str | None,
    Header(
        alias="x-ms-callback-url",
        max_length=2000,
        description="a URL that receives the outcome by POST (tried once)",
    ),
]
CallbackHeaders = Annotated[
    str | None,
    Header(
        alias="x-ms-callback-url-headers",
        max_length=8000,
        description="a JSON object of headers sent with the callback",
    ),
]


@dataclass(frozen=True)
class Outcome:
    request_id: str | None
    key_valid: bool
    api_token: str
    status: RegistrationStatus = RegistrationStatus.PENDING
    reason: RegistrationFailure | None = None


async def _callback(url: str | None, headers: str | None, state: State) -> Callback | None:
    """The callback the headers ask for; 400 when they are malformed or the URL reaches a
    place tidings does not call."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiError(400, "bad_request", "x-ms-callback-url must be an absolute http(s) URL")
    extra: dict[str, str] = {}
    if headers:
        try:
            parsed = json.loads(headers)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not all(isinstance(k, str) for k in parsed):
            raise ApiError(400, "bad_request", "x-ms-callback-url-headers must be a JSON object")
        extra = {key: str(value) for key, value in parsed.items()}
        if not all(
            HEADER_NAME.match(key) and not any(c in value for c in FORBIDDEN_IN_VALUES)
            for key, value in extra.items()
        ):
            raise ApiError(
                400,
                "bad_request",
                "x-ms-callback-url-headers must hold HTTP header names and one-line values",
            )
    await check_callback_url(url, CallbackPolicy.from_settings(state.settings))
    return Callback(url, extra)


def signature(url: str, api_token: str) -> str:
    """HMAC-SHA256 of the callback URL keyed with the API token, base64: the receiver, who
    knows the token, can tell the callback came from whoever holds it."""
    digest = hmac.new(api_token.encode(), url.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


async def send_callback(callback: Callback, outcome: Outcome, policy: CallbackPolicy) -> None:
    """POST the outcome once (tidings.api.routers.compat.callbacks bounds and guards it)."""
    body = CallbackBody(
        Status=outcome.status,
        Signature=signature(callback.url, outcome.api_token),
        FailureReason=outcome.reason,
    )
    await post_callback(callback, body.model_dump(mode="json"), policy)


def _dedup_key(item: DeviceRegistration) -> tuple[str, str]:
    token = item.token.lower() if item.ApnsDeviceToken is not None else item.token
    return item.app_id, token


@dataclass
class _Item:
    """One registration on its way: its request id, and what became of it so far."""

    body: DeviceRegistration
    request_id: str | None
    key_valid: bool = False
    reason: RegistrationFailure | None = None
    registration: Registration | None = None


async def _check(
    session: AsyncSession, body: DeviceRegistration, *, tracked: bool, duplicate: bool
) -> _Item:
    """The key and the token, before anything is written."""
    item = _Item(body, str(uuid.uuid4()) if tracked else None)
    if not await key_valid_for(session, body.ApiToken, body.app_id):
        log.info("compat registration for app %r refused: invalid ApiToken", body.app_id)
        return item
    item.key_valid = True
    if duplicate:
        item.reason = RegistrationFailure.DUPLICATE_EXISTS
        return item
    try:
        token = check_token(body.provider, body.token)
    except InvalidToken as error:
        item.reason = (
            RegistrationFailure.DEVICE_TOKEN_TOO_LONG
            if error.too_long
            else RegistrationFailure.FAILED_TO_STORE_DEVICE
        )
        return item
    item.registration = Registration(body.app_id, body.UserId, body.provider, token)
    return item


async def _register_all(session: AsyncSession, items: Sequence[_Item]) -> list[Outcome]:
    """Store the items' devices in the global lock order, then their tracked outcomes."""
    now = utcnow()
    storing = [item for item in items if item.registration is not None]
    devices = await register_devices(
        session, [item.registration for item in storing if item.registration is not None], now
    )
    for item, device in zip(storing, devices, strict=True):
        if device is None:
            item.reason = RegistrationFailure.FAILED_TO_STORE_DEVICE
    outcomes = []
    for item in items:
        if not item.key_valid:
            outcomes.append(Outcome(item.request_id, key_valid=False, api_token=item.body.ApiToken))
            continue
        outcome = Outcome(
            item.request_id,
            key_valid=True,
            api_token=item.body.ApiToken,
            status=RegistrationStatus.FAILED if item.reason else RegistrationStatus.SUCCESS,
            reason=item.reason,
        )
        if item.request_id is not None:
            await record_outcome(
                session,
                request_id=item.request_id,
                app_id=item.body.app_id,
                status=outcome.status,
                reason=item.reason,
                now=now,
            )
        log.debug(
            "compat registration app %s token %s: %s",
            item.body.app_id,
            mask_token(item.body.token),
            outcome.status.value,
        )
        outcomes.append(outcome)
    return outcomes


def _tracked(header: str | None) -> bool:
    return (header or "").strip().lower() == "true"


def _schedule(
    tasks: BackgroundTasks, callback: Callback | None, outcomes: list[Outcome], state: State
) -> None:
    """Callbacks go after the commit and after the answer; none for an invalid key."""
    if callback is None:
        return
    policy = CallbackPolicy.from_settings(state.settings)
    for outcome in outcomes:
        if outcome.key_valid:
            tasks.add_task(send_callback, callback, outcome, policy)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model_exclude_none=True,
    summary="Register a device",
)
async def register(
    org_id: OrgId,
    body: DeviceRegistration,
    session: WriteSession,
    tasks: BackgroundTasks,
    state: State,
    track: Track = None,
    callback_url: CallbackUrl = None,
    callback_headers: CallbackHeaders = None,
) -> RegistrationAccepted:
    callback = await _callback(callback_url, callback_headers, state)
    item = await _check(session, body, tracked=_tracked(track), duplicate=False)
    [outcome] = await _register_all(session, [item])
    await session.commit()
    _schedule(tasks, callback, [outcome], state)
    return RegistrationAccepted(RegistrationRequestId=outcome.request_id)


@router.post(
    "/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model_exclude_none=True,
    summary="Register up to 100 devices",
)
async def register_batch(
    org_id: OrgId,
    body: Annotated[list[DeviceRegistration], Field(min_length=1, max_length=MAX_BATCH)],
    session: WriteSession,
    tasks: BackgroundTasks,
    state: State,
    track: Track = None,
    callback_url: CallbackUrl = None,
    callback_headers: CallbackHeaders = None,
) -> list[RegistrationAccepted]:
    """Each item is registered on its own (a token repeated within the batch fails as
    DuplicateExists); the ids come back in request order."""
    callback = await _callback(callback_url, callback_headers, state)
    seen: set[tuple[str, str]] = set()
    items = []
    for registration in body:
        key = _dedup_key(registration)
        items.append(
            await _check(session, registration, tracked=_tracked(track), duplicate=key in seen)
        )
        seen.add(key)
    results = await _register_all(session, items)
    await session.commit()
    _schedule(tasks, callback, results, state)
    return [RegistrationAccepted(RegistrationRequestId=r.request_id) for r in results]


@router.post("/status", summary="Status of tracked registrations")
async def registration_status(
    org_id: OrgId, body: StatusRequest, session: WriteSession
) -> list[RegistrationState]:
    """Each id's status. Ids this app did not track (or that were sent with an invalid
    ApiToken) are Pending. An invalid ApiToken here is a 400."""
    if not await key_valid_for(session, body.ApiToken, body.app_id):
        raise ApiError(400, "api_token_not_valid", "ApiToken is not valid for MobileAppId")
    known = await outcomes(session, body.app_id, body.RegistrationRequestIds)
    answer = []
    for request_id in body.RegistrationRequestIds:
        row = known.get(request_id)
        answer.append(
            RegistrationState(
                RegistrationRequestId=request_id,
                Status=row.status if row else RegistrationStatus.PENDING,
                FailureReason=row.failure_reason if row else None,
            )
        )
    return answer


# The original documents the status path with a trailing slash; both are served.
router.add_api_route(
    "/status/",
    registration_status,
    methods=["POST"],
    include_in_schema=False,
)


async def _clean_up(session: AsyncSession, item: DeviceCleanup) -> None:
    if not await key_valid_for(session, item.ApiToken, item.app_id):
        log.info("compat cleanup for app %r ignored: invalid ApiToken", item.app_id)
        return
    await clean_up(session, app_id=item.app_id, profile_id=item.UserId, token=item.DeviceToken)


@router.post(
    "/cleanup",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    summary="Remove a user's device, or all of the user's devices",
)
async def cleanup(org_id: OrgId, body: DeviceCleanup, session: WriteSession) -> Response:
    await _clean_up(session, body)
    await session.commit()
    return Response(status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/cleanup/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    summary="Up to 100 cleanups",
)
async def cleanup_batch(
    org_id: OrgId,
    body: Annotated[list[DeviceCleanup], Field(min_length=1, max_length=MAX_BATCH)],
    session: WriteSession,
) -> Response:
    for item in body:
        await _clean_up(session, item)
    await session.commit()
    return Response(status_code=status.HTTP_202_ACCEPTED)
