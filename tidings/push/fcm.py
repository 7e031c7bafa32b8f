"""FCM sender on firebase-admin: send_each_async over HTTP/2, at most 500 per call."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import firebase_admin
from firebase_admin import credentials as firebase_credentials
from firebase_admin import messaging

from tidings.push.adapters import close_fcm_app, configure_fcm_app
from tidings.push.credentials import FcmCredentials
from tidings.push.masking import mask_token
from tidings.push.message import PushMessage
from tidings.push.outcome import Outcome, SendResult, classify_fcm
from tidings.push.sender import ProviderRoutes, SendItem, seconds_left

log = logging.getLogger(__name__)

FCM_BATCH_LIMIT = 500
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


class FcmSender:
    def __init__(
        self,
        credentials: FcmCredentials,
        *,
        app_name: str,
        routes: ProviderRoutes,
        max_in_flight: int,
        timeout_s: float,
    ) -> None:
        self.credentials = credentials
        self._app = firebase_admin.initialize_app(
            firebase_credentials.Certificate(credentials.info),
            options={"projectId": credentials.project_id, "httpTimeout": timeout_s},
            name=app_name,
        )
        configure_fcm_app(
            self._app,
            endpoint=routes.fcm_endpoint,
            ssl_context=routes.ssl_context(),
            max_connections=max(1, max_in_flight // 100),
            timeout_s=timeout_s,
        )
        self._chunk = min(FCM_BATCH_LIMIT, max_in_flight)

    async def send_batch(self, items: Sequence[SendItem]) -> list[SendResult]:
        return await self._send(items, dry_run=False)

    async def validate(self, items: Sequence[SendItem]) -> list[SendResult]:
        """FCM's validate_only: every check of a real send, nothing delivered."""
        return await self._send(items, dry_run=True)

    async def _send(self, items: Sequence[SendItem], *, dry_run: bool) -> list[SendResult]:
        results: list[SendResult] = []
        now = datetime.now(UTC)
        for start in range(0, len(items), self._chunk):
            chunk = items[start : start + self._chunk]
            batch = await messaging.send_each_async(
                [_message(item, now) for item in chunk], dry_run=dry_run, app=self._app
            )
            for item, response in zip(chunk, batch.responses, strict=True):
                result = (
                    SendResult(Outcome.DELIVERED, status=200, message_id=response.message_id)
                    if response.success
                    else _classify_exception(response.exception)
                )
                if result.outcome is not Outcome.DELIVERED:
                    log.info("FCM %s for %s", result.describe, mask_token(item.token))
                results.append(result)
        return results

    async def close(self) -> None:
        await close_fcm_app(self._app)


def _message(item: SendItem, now: datetime) -> messaging.Message:
    message: PushMessage = item.message
    data = message.custom_data(item.tracking_id)
    notification = None
    android_notification = None
    if message.push_type == "alert":
        notification = messaging.Notification(
            title=message.title, body=message.body, image=message.image_url
        )
        if message.android_channel_id or message.category:
            android_notification = messaging.AndroidNotification(
                channel_id=message.android_channel_id, click_action=message.category
            )
    left = seconds_left(item.expires_at, now)
    # firebase-admin 7.7 deprecates Message.token in favour of Firebase installation ids;
    # mobile backends register FCM registration tokens, which HTTP v1 still takes as "token".
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _build(item, data, notification, android_notification, left)


def _build(
    item: SendItem,
    data: dict[str, str],
    notification: messaging.Notification | None,
    android_notification: messaging.AndroidNotification | None,
    left: int | None,
) -> messaging.Message:
    message = item.message
    return messaging.Message(
        token=item.token,
        data=data,
        notification=notification,
        android=messaging.AndroidConfig(
            collapse_key=item.tracking_id,
            priority=message.priority,
            ttl=timedelta(seconds=left) if left is not None else None,
            notification=android_notification,
        ),
    )


def _classify_exception(error: Exception | None) -> SendResult:
    """Classify from the raw HTTP answer when there is one: the errorCode in details, the
    field violations (a bad *token* is gone, a bad *payload* is a configuration fault), and
    Retry-After."""
    response = getattr(error, "http_response", None)
    if response is None:
        cause = getattr(error, "cause", None) or error
        return SendResult(Outcome.RETRY_LATER, reason=f"transport: {type(cause).__name__}")
    status = int(response.status_code)
    text = response.text
    body: dict[str, Any] = {}
    try:
        parsed = json.loads(text) if text else {}
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            body = parsed["error"]
    except json.JSONDecodeError:
        pass
    error_code, fields = _details(body.get("details"))
    status_name = body.get("status") if isinstance(body.get("status"), str) else None
    message = " ".join([str(body.get("message", "")), *fields])
    outcome = classify_fcm(status, error_code, status_name, message)
    known = bool(body) and (error_code or status_name)
    if outcome is Outcome.RETRY_LATER and not known:
        log.warning("FCM answered %s with an unrecognised body: %.300r", status, text)
    return SendResult(
        outcome,
        status=status,
        reason=error_code or status_name or f"HTTP {status}",
        retry_after_s=_retry_after(response.headers.get("retry-after")),
        raw=None if known else text[:500],
    )


def _details(details: object) -> tuple[str | None, list[str]]:
    error_code: str | None = None
    fields: list[str] = []
    if not isinstance(details, list):
        return None, fields
    for detail in details:
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == FCM_ERROR_TYPE and error_code is None:
            error_code = str(detail.get("errorCode") or "") or None
        if detail.get("@type") == BAD_REQUEST_TYPE:
            for violation in detail.get("fieldViolations") or []:
                if isinstance(violation, dict):
                    fields.append(str(violation.get("field", "")))
    return error_code, fields


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
