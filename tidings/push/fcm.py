"""FCM sender on firebase-admin: HTTP v1 over HTTP/2, ``send_each_async`` in chunks.

Each message is its own HTTP/2 request; a chunk holds at most ``max_in_flight`` of them (and
FCM's 500). Every message gets its own answer: a failed OAuth2 refresh reaches firebase-admin
as an httpx error on the messages it stopped (tidings.push.adapters.TokenRefreshFailed), so it
never fails a whole batch and the answers that batch already had.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import firebase_admin
import httpx
from firebase_admin import credentials as firebase_credentials
from firebase_admin import messaging
from google.auth import exceptions as google_auth_exceptions

from tidings.observe.metrics import PROVIDER_LATENCY
from tidings.push.adapters import TokenRefreshFailed, close_fcm_app, configure_fcm_app
from tidings.push.credentials import FcmCredentials
from tidings.push.h2transport import AnswerLost, RequestNotProcessed
from tidings.push.masking import mask_token
from tidings.push.message import PushMessage, android_tag, fcm_apns_headers, fcm_aps_dictionary
from tidings.push.outcome import Outcome, SendResult, classify_fcm, fcm_known
from tidings.push.sender import (
    NOT_SENT_HALTED,
    URGENT_SENDS,
    InFlightLimit,
    ProviderRoutes,
    ResultSink,
    SendItem,
    seconds_left,
    sends_halted,
    urgent_slots,
)

log = logging.getLogger(__name__)

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
FCM_BATCH_LIMIT = 500
APS_FIELDS = frozenset(
    {"alert", "badge", "sound", "category", "thread-id", "content-available", "mutable-content"}
)
# HTTP/2 streams per connection are plenty; a few connections spread the TLS work.
STREAMS_PER_CONNECTION = 100


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
            max_connections=max(1, max_in_flight // STREAMS_PER_CONNECTION),
            timeout_s=timeout_s,
        )
        self._chunk = max(1, min(FCM_BATCH_LIMIT, max_in_flight))
        self._in_flight = InFlightLimit(max_in_flight)
        self._urgent_in_flight = InFlightLimit(urgent_slots(max_in_flight))

    @property
    def app(self) -> firebase_admin.App:
        return self._app

    async def validate(self, items: Sequence[SendItem]) -> list[SendResult]:
        """FCM's validate_only: every check of a real send, nothing delivered."""
        return await self._send(items, dry_run=True)

    async def validate_topic(self, topic: str) -> SendResult:
        """A validate_only send to a topic: the service account, project and permission are
        checked, nothing is delivered and no device token is needed (the credential check)."""
        message = messaging.Message(topic=topic, data={"check": "tidings"})
        [result] = await self._send_messages([message], [f"topic:{topic}"], dry_run=True)
        return result

    async def send(self, item: SendItem) -> SendResult:
        [result] = await self._send([item], dry_run=False)
        return result

    async def send_batch(
        self, items: Sequence[SendItem], on_result: ResultSink | None = None
    ) -> list[SendResult]:
        return await self._send(items, dry_run=False, on_result=on_result)

    async def _send(
        self, items: Sequence[SendItem], *, dry_run: bool, on_result: ResultSink | None = None
    ) -> list[SendResult]:
        now = datetime.now(UTC)
        results: list[SendResult] = []
        for start in range(0, len(items), self._chunk):
            chunk = items[start : start + self._chunk]
            messages = [build_message(item, now) for item in chunk]
            tokens = [item.token for item in chunk]
            results.extend(
                await self._send_messages(
                    messages, tokens, dry_run=dry_run, on_result=on_result, offset=start
                )
            )
        return results

    async def _send_messages(
        self,
        messages: list[messaging.Message],
        tokens: list[str],
        *,
        dry_run: bool,
        on_result: ResultSink | None = None,
        offset: int = 0,
    ) -> list[SendResult]:
        """Each message is its own request (firebase-admin's ``send_each_async`` of one), so
        each result is known, and told to ``on_result``, as soon as its answer comes."""

        async def one(index: int, message: messaging.Message) -> SendResult:
            if sends_halted():
                result = SendResult(Outcome.RETRY_LATER, reason=NOT_SENT_HALTED)
            else:
                result = await self._send_one(message, tokens[index], dry_run)
            recorded = on_result(offset + index, result) if on_result is not None else None
            if recorded is not None:
                await recorded  # the request's share of the in-flight bound until recorded
            return result

        limit = self._urgent_in_flight if URGENT_SENDS.get() else self._in_flight
        async with limit.hold(len(messages)):
            return list(await asyncio.gather(*(one(i, m) for i, m in enumerate(messages))))

    async def _send_one(self, message: messaging.Message, token: str, dry_run: bool) -> SendResult:
        started = time.perf_counter()
        try:
            batch = await messaging.send_each_async([message], dry_run=dry_run, app=self._app)
            result = self._result(batch.responses[0], token)
        except Exception as error:  # unexpected (a client bug): retried, never lost
            log.exception("FCM client failed for %s", mask_token(token))
            result = SendResult(Outcome.ANSWER_LOST, reason=f"client: {type(error).__name__}")
        PROVIDER_LATENCY.labels("fcm", result.outcome.value).observe(time.perf_counter() - started)
        return result

    @staticmethod
    def _result(response: messaging.SendResponse, token: str) -> SendResult:
        if response.success:
            return SendResult(Outcome.DELIVERED, status=200, message_id=response.message_id)
        result = _classify_exception(response.exception)
        if not result.known:
            log.warning(
                "FCM answered %s (body %.300r) for %s, outside the reference table: treated as %s",
                result.describe,
                result.raw,
                mask_token(token),
                result.outcome.value,
            )
        else:
            log.info("FCM %s for %s", result.describe, mask_token(token))
        return result

    async def close(self) -> None:
        await close_fcm_app(self._app)


def build_message(item: SendItem, now: datetime) -> messaging.Message:
    """The firebase-admin message for one device; tidings.push.message.fcm_message_dict is
    the same message as JSON (for the size check), and a test holds the two together."""
    message: PushMessage = item.message
    left = seconds_left(item.expires_at, now)
    notification = None
    android_notification = None
    if not message.is_background:
        notification = messaging.Notification(
            title=message.title, body=message.body, image=message.image_url
        )
        options = message.android
        android_notification = messaging.AndroidNotification(
            channel_id=options.channel_id,
            click_action=message.android_click_action,
            sound=message.android_sound,
            icon=options.icon,
            color=options.color,
            tag=android_tag(message, item.tracking_id),
            notification_count=message.badge,
        )
    expiration = int(now.timestamp()) + left if left is not None else None
    android = messaging.AndroidConfig(
        collapse_key=item.tracking_id,
        priority=message.priority,
        ttl=timedelta(seconds=left) if left is not None else None,
        notification=android_notification,
    )
    aps = fcm_aps_dictionary(message)
    apns = messaging.APNSConfig(
        headers=fcm_apns_headers(message, item.tracking_id, expiration),
        payload=messaging.APNSPayload(aps=_aps(aps)) if aps else None,
        fcm_options=(
            messaging.APNSFCMOptions(image=message.image_url)
            if message.image_url and not message.is_background
            else None
        ),
    )
    # firebase-admin 7.7 deprecates Message.token in favour of Firebase installation ids;
    # mobile backends register FCM registration tokens, which HTTP v1 still takes as "token".
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return messaging.Message(
            token=item.token,
            data=message.custom_data(item.tracking_id),
            notification=notification,
            android=android,
            apns=apns,
        )


def _aps(aps: dict[str, Any]) -> messaging.Aps:
    """firebase-admin's Aps for an aps dictionary: its own fields where it has one, the rest
    (interruption-level, relevance-score) as custom data."""
    own = APS_FIELDS
    alert = aps.get("alert")
    return messaging.Aps(
        alert=messaging.ApsAlert(**alert) if isinstance(alert, dict) else None,
        badge=aps.get("badge"),
        sound=aps.get("sound"),
        category=aps.get("category"),
        thread_id=aps.get("thread-id"),
        content_available=True if aps.get("content-available") else None,
        mutable_content=True if aps.get("mutable-content") else None,
        custom_data={k: v for k, v in aps.items() if k not in own} or None,
    )


# httpx failures that leave the request unsent: no connection, no pool slot, or a body
# never written whole (an HTTP/2 request is processed only once its END_STREAM arrives)
NOT_SENT_ERRORS = (
    RequestNotProcessed,
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
)


def _classify_failure(cause: Exception) -> SendResult:
    """A send that got no HTTP answer: the OAuth2 token endpoint refused the service account
    (a configuration fault), the request never left (retry later), or it left and its answer
    was lost (an unknown outcome)."""
    refresh = isinstance(cause, TokenRefreshFailed)
    if isinstance(cause, TokenRefreshFailed):
        cause = cause.error
    if isinstance(cause, google_auth_exceptions.RefreshError) and not getattr(
        cause, "retryable", False
    ):
        return SendResult(
            Outcome.CONFIG_FAULT,
            reason=f"service account refused by its token endpoint: {_first_line(cause)}",
        )
    if refresh:
        return SendResult(Outcome.RETRY_LATER, reason=f"not sent: token refresh ({_name(cause)})")
    if isinstance(cause, AnswerLost):
        return SendResult(Outcome.ANSWER_LOST, reason=f"answer lost: {cause.reason}")
    if isinstance(cause, NOT_SENT_ERRORS):
        return SendResult(Outcome.RETRY_LATER, reason=f"not sent: {_name(cause)}")
    return SendResult(Outcome.ANSWER_LOST, reason=f"answer lost: {_name(cause)}")


def _name(error: Exception) -> str:
    reason = getattr(error, "reason", None)
    return reason if isinstance(reason, str) else type(error).__name__


def _classify_exception(error: Exception | None) -> SendResult:
    """Classify from the raw HTTP answer when there is one: the errorCode in details, the
    field violations (a bad *token* is gone, a bad *payload* is a configuration fault), and
    Retry-After."""
    response = getattr(error, "http_response", None)
    if response is None:
        cause = getattr(error, "cause", None) or error
        if isinstance(cause, Exception):
            return _classify_failure(cause)
        return SendResult(Outcome.ANSWER_LOST, reason="answer lost: transport")
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
    known = bool(body) and fcm_known(status, error_code, status_name)
    reason = error_code or status_name or f"HTTP {status}"
    if error_code == "INVALID_ARGUMENT" and fields:
        reason = f"{reason} ({', '.join(fields)})"
    return SendResult(
        outcome,
        status=status,
        reason=reason,
        retry_after_s=_retry_after(response.headers.get("retry-after")),
        raw=None if known else text[:500],
        known=known,
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
    """Retry-After in seconds, or as an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
