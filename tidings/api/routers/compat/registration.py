"""Device registration, its status call, its signed callback, and cleanup.

Registration answers 202 as soon as the request is well formed. tidings then stores the
device in the same request (validating the token's form; it sends no "dry run" push), so a
tracked registration's status is final when the 202 arrives. An invalid ``ApiToken`` (or an
unknown ``MobileAppId``) stores nothing and leaves the status Pending, as the original does
on purpose: the answer never tells a caller whether a key exists.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, BackgroundTasks, Header, Response, status
from pydantic import Field
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.api.deps import WriteSession
from tidings.api.errors import ApiError
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
from tidings.store.devices import InvalidToken, check_token, clean_up, register_device
from tidings.store.keys import key_valid_for
from tidings.store.models import RegistrationFailure, RegistrationStatus
from tidings.store.registrations import outcomes, record_outcome
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

CALLBACK_TIMEOUT_S = 10.0

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


@dataclass(frozen=True)
class Callback:
    url: str
    headers: dict[str, str]


def _callback(url: str | None, headers: str | None) -> Callback | None:
    """The callback the headers ask for; 400 when they are malformed."""
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
    return Callback(url, extra)


def signature(url: str, api_token: str) -> str:
    """HMAC-SHA256 of the callback URL keyed with the API token, base64: the receiver, who
    knows the token, can tell the callback came from whoever holds it."""
    digest = hmac.new(api_token.encode(), url.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


async def send_callback(callback: Callback, outcome: Outcome) -> None:
    """POST the outcome once; a failure is logged (host only: the URL may carry secrets)."""
    body = CallbackBody(
        Status=outcome.status,
        Signature=signature(callback.url, outcome.api_token),
        FailureReason=outcome.reason,
    )
    host = urlsplit(callback.url).hostname
    try:
        async with httpx.AsyncClient(timeout=CALLBACK_TIMEOUT_S) as client:
            answer = await client.post(
                callback.url, json=body.model_dump(mode="json"), headers=callback.headers
            )
        log.info("registration callback to %s answered %s", host, answer.status_code)
    except httpx.HTTPError as error:
        log.warning("registration callback to %s failed: %s", host, type(error).__name__)


def _dedup_key(item: DeviceRegistration) -> tuple[str, str]:
    token = item.token.lower() if item.ApnsDeviceToken is not None else item.token
    return item.app_id, token


async def _register(
    session: AsyncSession, item: DeviceRegistration, *, tracked: bool, duplicate: bool
) -> Outcome:
    request_id = str(uuid.uuid4()) if tracked else None
    if not await key_valid_for(session, item.ApiToken, item.app_id):
        log.info("compat registration for app %r refused: invalid ApiToken", item.app_id)
        return Outcome(request_id, key_valid=False, api_token=item.ApiToken)
    reason: RegistrationFailure | None = None
    if duplicate:
        reason = RegistrationFailure.DUPLICATE_EXISTS
    else:
        try:
            check_token(item.provider, item.token)
            async with session.begin_nested():
                await register_device(
                    session,
                    app_id=item.app_id,
                    profile_id=item.UserId,
                    provider=item.provider,
                    token=item.token,
                    environment=None,
                    now=utcnow(),
                )
        except InvalidToken as error:
            reason = (
                RegistrationFailure.DEVICE_TOKEN_TOO_LONG
                if error.too_long
                else RegistrationFailure.FAILED_TO_STORE_DEVICE
            )
        except IntegrityError:
            reason = RegistrationFailure.FAILED_TO_STORE_DEVICE
    outcome = Outcome(
        request_id,
        key_valid=True,
        api_token=item.ApiToken,
        status=RegistrationStatus.FAILED if reason else RegistrationStatus.SUCCESS,
        reason=reason,
    )
    if request_id is not None:
        await record_outcome(
            session,
            request_id=request_id,
            app_id=item.app_id,
            status=outcome.status,
            reason=reason,
            now=utcnow(),
        )
    log.debug(
        "compat registration app %s token %s: %s",
        item.app_id,
        mask_token(item.token),
        outcome.status.value,
    )
    return outcome


def _tracked(header: str | None) -> bool:
    return (header or "").strip().lower() == "true"


def _schedule(tasks: BackgroundTasks, callback: Callback | None, outcomes: list[Outcome]) -> None:
    """Callbacks go after the commit and after the answer; none for an invalid key."""
    if callback is None:
        return
    for outcome in outcomes:
        if outcome.key_valid:
            tasks.add_task(send_callback, callback, outcome)


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
    track: Track = None,
    callback_url: CallbackUrl = None,
    callback_headers: CallbackHeaders = None,
) -> RegistrationAccepted:
    callback = _callback(callback_url, callback_headers)
    outcome = await _register(session, body, tracked=_tracked(track), duplicate=False)
    await session.commit()
    _schedule(tasks, callback, [outcome])
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
    track: Track = None,
    callback_url: CallbackUrl = None,
    callback_headers: CallbackHeaders = None,
) -> list[RegistrationAccepted]:
    """Each item is registered on its own (a token repeated within the batch fails as
    DuplicateExists); the ids come back in request order."""
    callback = _callback(callback_url, callback_headers)
    seen: set[tuple[str, str]] = set()
    results = []
    for item in body:
        key = _dedup_key(item)
        results.append(
            await _register(session, item, tracked=_tracked(track), duplicate=key in seen)
        )
        seen.add(key)
    await session.commit()
    _schedule(tasks, callback, results)
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
