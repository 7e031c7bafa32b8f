"""Device registration, its status call, its signed callback, and cleanup.

Registration answers 202 as soon as the request is well formed. tidings then stores the
device in the same request (validating the token's form; it sends no "dry run" push), so a
tracked registration's status is final when the 202 arrives. An invalid ``ApiToken`` (or an
unknown ``MobileAppId``) stores nothing and leaves the status Pending, as the original does
on purpose: the answer never tells a caller whether a key exists.

A token for a platform the app has no credentials for fails as ``DryRunSendingFailed``, as
the original's validation send would: nothing could ever be sent to it.

Every ``ApiToken`` of a request is checked before anything else happens: an invalid one counts
as a failed authentication of the caller's address (tidings.api.throttle), and a request
whose keys are all invalid answers 429 once that address failed too often. Only then is a
callback URL's host resolved; it must reach a public address unless ops allow-list it (see
:mod:`tidings.api.routers.compat.callbacks`). A batch writes its devices in the same global
lock order as the native batch (profiles first, then devices by app and token), so
concurrent batches never deadlock.

``UserId`` is the profile id. The original registers a device for any user id (the profile
lives in the marketing system, not in the push service), and its contract has no failure
for an unknown one, so this surface asks for the profile to be created: an unknown
``UserId`` gets an empty profile, as it would with ``"create_profile": true`` on the native
API (which never creates one unasked).
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
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, BackgroundTasks, Header, Response, status
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlmodel.ext.asyncio.session import AsyncSession

from tidings.api.deps import ApiState, Source, State, WriteSession, rate_limited
from tidings.api.errors import ApiError, responses
from tidings.api.routers.apps import sends_to
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
    create_missing_profiles,
    register_devices,
)
from tidings.store.keys import key_valid_for
from tidings.store.models import App, Provider, RegistrationFailure, RegistrationStatus
from tidings.store.registrations import outcomes, record_outcome
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

# an HTTP header name (RFC 9110 token); values may not break the header block
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
FORBIDDEN_IN_VALUES = ("\r", "\n", "\x00")
# headers that belong to the connection or the message's framing (and any Proxy-* header):
# tidings sets them for the callback it sends, and a caller setting them could smuggle a
# second request or reroute it
HOP_BY_HOP = frozenset(
    {
        "connection",
        "content-length",
        "expect",
        "host",
        "keep-alive",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

router = APIRouter(
    prefix="/pushdeviceregistration/devices",
    tags=["compat: Customer Insights - Journeys"],
    route_class=CompatRoute,
    responses=BAD_REQUEST | responses(429),
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


def _callback(url: str | None, headers: str | None) -> Callback | None:
    """The callback the headers ask for; 400 when they are malformed. Where the URL leads is
    checked later (``check_callback_url``), once a key of the request is known to be valid."""
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
        for key in extra:
            if key.lower() in HOP_BY_HOP or key.lower().startswith("proxy-"):
                message = (
                    f"x-ms-callback-url-headers may not set {key}: tidings sets the headers of "
                    "the callback's connection and framing itself"
                )
                raise ApiError(
                    400,
                    "bad_request",
                    message,
                    [{"loc": ["header", "x-ms-callback-url-headers", key], "msg": message}],
                )
    return Callback(url, extra)


@dataclass
class _Checks:
    """What a request's items are checked against, each thing looked up once: its keys (an
    invalid one counted as a failed authentication of the caller's address) and its apps."""

    session: AsyncSession
    state: ApiState
    source: str
    keys: dict[tuple[str, str], bool] = field(default_factory=dict)
    apps: dict[str, App | None] = field(default_factory=dict)

    async def key_valid(self, api_token: str, app_id: str) -> bool:
        if (api_token, app_id) not in self.keys:
            self.keys[api_token, app_id] = await key_valid_for(self.session, api_token, app_id)
        return self.keys[api_token, app_id]

    async def sends_to(self, app_id: str, provider: Provider) -> bool:
        if app_id not in self.apps:
            self.apps[app_id] = await self.session.get(App, app_id)
        app = self.apps[app_id]
        return app is not None and sends_to(app, provider)

    def settle(self) -> None:
        """Count one failed authentication if a key was invalid; 429 once the address failed
        too often, unless a key of the request was valid (a valid key is never locked out)."""
        if all(self.keys.values()):
            return
        retry_after = self.state.failed_authentications.fail(self.source)
        if retry_after is not None and not any(self.keys.values()):
            raise rate_limited(retry_after)

    @property
    def any_valid(self) -> bool:
        return any(self.keys.values())


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
    checks: _Checks, body: DeviceRegistration, *, tracked: bool, duplicate: bool
) -> _Item:
    """The key, the token and the app's credentials for its platform, before anything is
    written."""
    item = _Item(body, str(uuid.uuid4()) if tracked else None)
    if not await checks.key_valid(body.ApiToken, body.app_id):
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
    if not await checks.sends_to(body.app_id, body.provider):
        log.info(
            "compat registration for app %r failed: the app has no %s credentials",
            body.app_id,
            body.provider.value,
        )
        item.reason = RegistrationFailure.DRY_RUN_SENDING_FAILED
        return item
    item.registration = Registration(body.app_id, body.UserId, body.provider, token)
    return item


async def _register_all(session: AsyncSession, items: Sequence[_Item]) -> list[Outcome]:
    """Store the items' devices in the global lock order, then their tracked outcomes."""
    now = utcnow()
    storing = [item for item in items if item.registration is not None]
    # the compat contract registers for any UserId: its profile is created if missing
    await create_missing_profiles(
        session, [i.registration.profile_id for i in storing if i.registration is not None], now
    )
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


ACCEPTED_DESCRIPTION = (
    "Accepted. The body is empty, unless `x-ms-track-registration: true` asked for the "
    "registration request ids"
)


async def _register_checked(
    checks: _Checks, items: list[_Item], callback: Callback | None
) -> list[Outcome]:
    """Settle the keys, check where the callback leads (only for a caller with a valid key),
    then store the items (committed before the answer)."""
    checks.settle()
    policy = CallbackPolicy.from_settings(checks.state.settings)
    if callback is not None and checks.any_valid:
        await check_callback_url(callback.url, policy)
    results = await _register_all(checks.session, items)
    await checks.session.commit()
    return results


def _accepted(answer: object | None) -> Response:
    if answer is None:
        return Response(status_code=status.HTTP_202_ACCEPTED)
    return JSONResponse(answer, status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses={202: {"model": RegistrationAccepted, "description": ACCEPTED_DESCRIPTION}},
    summary="Register a device",
)
async def register(
    org_id: OrgId,
    body: DeviceRegistration,
    session: WriteSession,
    tasks: BackgroundTasks,
    state: State,
    source: Source,
    track: Track = None,
    callback_url: CallbackUrl = None,
    callback_headers: CallbackHeaders = None,
) -> Response:
    callback = _callback(callback_url, callback_headers)
    checks = _Checks(session, state, source)
    item = await _check(checks, body, tracked=_tracked(track), duplicate=False)
    [outcome] = await _register_checked(checks, [item], callback)
    _schedule(tasks, callback, [outcome], state)
    if outcome.request_id is None:
        return _accepted(None)
    return _accepted({"RegistrationRequestId": outcome.request_id})


@router.post(
    "/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    responses={202: {"model": list[RegistrationAccepted], "description": ACCEPTED_DESCRIPTION}},
    summary="Register up to 100 devices",
)
async def register_batch(
    org_id: OrgId,
    body: Annotated[list[DeviceRegistration], Field(min_length=1, max_length=MAX_BATCH)],
    session: WriteSession,
    tasks: BackgroundTasks,
    state: State,
    source: Source,
    track: Track = None,
    callback_url: CallbackUrl = None,
    callback_headers: CallbackHeaders = None,
) -> Response:
    """Each item is registered on its own (a token repeated within the batch fails as
    DuplicateExists); with `x-ms-track-registration: true` the ids come back in request
    order."""
    callback = _callback(callback_url, callback_headers)
    checks = _Checks(session, state, source)
    seen: set[tuple[str, str]] = set()
    items = []
    for registration in body:
        key = _dedup_key(registration)
        items.append(
            await _check(checks, registration, tracked=_tracked(track), duplicate=key in seen)
        )
        seen.add(key)
    results = await _register_checked(checks, items, callback)
    _schedule(tasks, callback, results, state)
    if not _tracked(track):
        return _accepted(None)
    return _accepted([{"RegistrationRequestId": r.request_id} for r in results])


@router.post("/status", summary="Status of tracked registrations")
async def registration_status(
    org_id: OrgId, body: StatusRequest, session: WriteSession, state: State, source: Source
) -> list[RegistrationState]:
    """Each id's status. Ids this app did not track (or that were sent with an invalid
    ApiToken) are Pending. An invalid ApiToken here is a 400."""
    checks = _Checks(session, state, source)
    valid = await checks.key_valid(body.ApiToken, body.app_id)
    checks.settle()
    if not valid:
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


async def _clean_up_all(checks: _Checks, items: Sequence[DeviceCleanup]) -> None:
    valid = []
    for item in items:
        if await checks.key_valid(item.ApiToken, item.app_id):
            valid.append(item)
        else:
            log.info("compat cleanup for app %r ignored: invalid ApiToken", item.app_id)
    checks.settle()
    for item in valid:
        await clean_up(
            checks.session, app_id=item.app_id, profile_id=item.UserId, token=item.DeviceToken
        )
    await checks.session.commit()


@router.post(
    "/cleanup",
    status_code=status.HTTP_202_ACCEPTED,
    response_class=Response,
    summary="Remove a user's device, or all of the user's devices",
)
async def cleanup(
    org_id: OrgId, body: DeviceCleanup, session: WriteSession, state: State, source: Source
) -> Response:
    await _clean_up_all(_Checks(session, state, source), [body])
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
    state: State,
    source: Source,
) -> Response:
    await _clean_up_all(_Checks(session, state, source), body)
    return Response(status_code=status.HTTP_202_ACCEPTED)
