"""The FCM simulator: ``POST /v1/projects/<project>/messages:send`` answered as Google does.

Authentication first (an access token from :mod:`.oauth`), then the project, then the body
(:mod:`.fcm_validation`), then the token's registry (sender, unregistered) and the scenario.
Error bodies follow Google's shape exactly; firebase-admin maps them to its exception types by
the ``FcmError`` detail, or by ``status`` when there is none. Served over HTTP/2 and HTTP/1.1
alike (ALPN), as Google's endpoint is.

What a device shows depends on its platform (the scenario's ``platforms``): Android replaces a
shown notification only by ``android.notification.tag`` (``android.collapse_key`` replaces
only a message not yet delivered, and the simulated devices are online); iOS replaces by the
``apns-collapse-id`` header of ``apns.headers``. A data-only message goes to the app, which
sees every copy.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

from .base import SimulatorBase
from .fcm_validation import InvalidArgument, parse_request
from .oauth import TokenIssuer
from .records import SimRecord
from .scenario import Answer, Platform, Scenario
from .wire import ANSWER_LOST, Reply, Request, ServerConnection

FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"

# errorCode -> (HTTP status, status, message), as Google answers them.
ERROR_CODES: dict[str, tuple[int, str, str]] = {
    "UNSPECIFIED_ERROR": (500, "INTERNAL", "Internal error encountered."),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "QUOTA_EXCEEDED": (
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests' and limit 'Send requests per minute' "
        "of service 'fcm.googleapis.com'.",
    ),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
    "APNS_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
}
STATUS_ERROR_CODE = {
    400: "INVALID_ARGUMENT",
    401: "THIRD_PARTY_AUTH_ERROR",
    403: "SENDER_ID_MISMATCH",
    404: "UNREGISTERED",
    429: "QUOTA_EXCEEDED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
QUOTA_RETRY_AFTER_S = 60
_CREDENTIALS_HINT = (
    "Expected OAuth 2 access token, login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_PATH = re.compile(r"/v1/projects/([^/]+)/messages:send")
_JSON = ("content-type", "application/json; charset=UTF-8")


def error_body(
    code: int, status: str, message: str, details: list[dict[str, Any]] | None = None
) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return json.dumps({"error": error}, indent=2).encode()


def _error_info(reason: str) -> dict[str, Any]:
    return {
        "@type": ERROR_INFO,
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {
            "method": "google.firebase.fcm.v1.FcmService.SendMessage",
            "service": "fcm.googleapis.com",
        },
    }


class _Failed(Exception):
    def __init__(self, reply: Reply, reason: str) -> None:
        self.reply = reply
        self.reason = reason


def _fail(code: int, status: str, message: str, details: list[dict[str, Any]] | None) -> _Failed:
    reason = status
    for detail in details or []:
        if detail.get("@type") == FCM_ERROR:
            reason = detail["errorCode"]
    return _Failed(Reply(code, [_JSON], error_body(code, status, message, details)), reason)


def _fcm_error(error_code: str, retry_after_s: int | None = None) -> _Failed:
    code, status, message = ERROR_CODES[error_code]
    failed = _fail(code, status, message, [{"@type": FCM_ERROR, "errorCode": error_code}])
    if retry_after_s is not None:
        failed.reply.headers.append(("retry-after", str(retry_after_s)))
    return failed


class FcmSimulator(SimulatorBase):
    """Answers FCM HTTP v1 sends for the service accounts its :class:`TokenIssuer` created."""

    provider = "fcm"

    def __init__(
        self, issuer: TokenIssuer, token_uri: str, *, record_payloads: bool = True
    ) -> None:
        super().__init__(record_payloads=record_payloads)
        self.issuer = issuer
        self.token_uri = token_uri

    def create_service_account(self, project_id: str) -> dict[str, str]:
        """A complete service-account JSON for ``project_id``, trusted by this simulator."""
        return self.issuer.create_service_account(project_id, self.token_uri)

    def expire_access_tokens(self, project_id: str | None = None) -> None:
        """Expire the access tokens issued so far (of one project, or all): the next send
        gets 401 and firebase-admin refreshes."""
        self.issuer.expire(project_id)

    def set_scenario(self, scenario: Scenario) -> None:
        super().set_scenario(scenario)
        self.issuer.ttl_s = scenario.access_token_ttl_s

    def reset(self) -> None:
        super().reset()
        self.issuer.ttl_s = self.scenario.access_token_ttl_s

    # -- wire.Handler -----------------------------------------------------------------------

    def initial_stream_limit(self, conn: ServerConnection) -> int:
        return self.scenario.max_concurrent_streams

    def handle(self, request: Request, conn: ServerConnection) -> Reply:
        now = time.time()
        message: dict[str, Any] | None = None
        validate_only = False
        answer: Answer | None = None
        try:
            project = self._authorize(request.headers, now)
            try:
                message, validate_only = parse_request(request.body)
            except InvalidArgument as invalid:
                raise self._invalid(invalid) from None
            answer = None if validate_only else self._state.next_answer(_target(message))
            reply, reason = self._answer(answer, project, message, validate_only)
        except _Failed as failed:
            reply, reason = failed.reply, failed.reason
        if self._state.scenario.latency is not None or answer is not None:
            reply.delay_s = self._state.latency_s(answer)
        record = self._record(request, message, validate_only, reply, reason, now)
        return self._received(reply, record)

    def _authorize(self, headers: list[tuple[str, str]], now: float) -> str:
        """The project the request may send for, or raise the error Google answers."""
        method = path = authorization = ""
        for name, value in headers:
            if name == ":method":
                method = value
            elif name == ":path":
                path = value
            elif name == "authorization":
                authorization = value
        match = _PATH.fullmatch(path)
        if method != "POST" or match is None:
            raise _fail(404, "NOT_FOUND", "Requested entity was not found.", None)
        project = match.group(1)
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value:
            message = f"Request is missing required authentication credential. {_CREDENTIALS_HINT}"
            raise _fail(401, "UNAUTHENTICATED", message, [_error_info("CREDENTIALS_MISSING")])
        token = self.issuer.lookup(value)
        if token is None or token.expires_at <= now:
            reason = "ACCESS_TOKEN_TYPE_UNSUPPORTED" if token is None else "ACCESS_TOKEN_EXPIRED"
            message = f"Request had invalid authentication credentials. {_CREDENTIALS_HINT}"
            raise _fail(401, "UNAUTHENTICATED", message, [_error_info(reason)])
        if not self.issuer.knows_project(project):
            raise _fail(404, "NOT_FOUND", "Requested entity was not found.", None)
        if token.project_id != project:
            message = (
                "Permission 'cloudmessaging.messages.create' denied on resource "
                f"'//cloudresourcemanager.googleapis.com/projects/{project}' "
                "(or it may not exist)."
            )
            raise _fail(403, "PERMISSION_DENIED", message, [_error_info("IAM_PERMISSION_DENIED")])
        return project

    @staticmethod
    def _invalid(invalid: InvalidArgument) -> _Failed:
        violation: dict[str, Any] = {"field": invalid.field, "description": invalid.description}
        details: list[dict[str, Any]] = [
            {"@type": FCM_ERROR, "errorCode": "INVALID_ARGUMENT"},
            {"@type": BAD_REQUEST, "fieldViolations": [violation]},
        ]
        return _fail(400, "INVALID_ARGUMENT", invalid.message, details)

    def _answer(
        self, answer: Answer | None, project: str, message: dict[str, Any], validate_only: bool
    ) -> tuple[Reply, str | None]:
        if answer is not None and answer.action == "answer_lost":
            # Processed exactly as without the fault; the server then loses the answer.
            try:
                reply, reason = self._answer(
                    answer.model_copy(update={"action": None}), project, message, validate_only
                )
            except _Failed as failed:
                reply, reason = failed.reply, failed.reason
            reply.action = "answer_lost"
            return reply, reason if reason is not None else ANSWER_LOST
        token = message.get("token", message.get("fid"))
        if isinstance(token, str):
            owner = self._state.scenario.token_projects.get(token)
            if owner is not None and owner != project:
                raise _fcm_error("SENDER_ID_MISMATCH")
        if answer is not None and answer.action is not None:
            return Reply(status=0, action=answer.action), answer.action
        if answer is not None and (
            answer.error_code is not None
            or answer.raw_body is not None
            or (answer.status is not None and answer.status != 200)
        ):
            return self._scripted(answer)
        if isinstance(token, str) and token in self._unregistered:
            raise _fcm_error("UNREGISTERED")
        message_id = "fake_message_id" if validate_only else f"0:{secrets.token_hex(8)}"
        body = json.dumps({"name": f"projects/{project}/messages/{message_id}"}).encode()
        headers = [_JSON]
        if answer is not None and answer.retry_after_s is not None:
            headers.append(("retry-after", str(answer.retry_after_s)))
        return Reply(200, headers, body), None

    @staticmethod
    def _scripted(answer: Answer) -> tuple[Reply, str | None]:
        error_code = answer.error_code or STATUS_ERROR_CODE.get(answer.status or 500, "INTERNAL")
        default_code, default_status, default_message = ERROR_CODES.get(
            error_code, ERROR_CODES["INTERNAL"]
        )
        code = answer.status or default_code
        retry_after = answer.retry_after_s
        if retry_after is None and error_code == "QUOTA_EXCEEDED":
            retry_after = QUOTA_RETRY_AFTER_S
        headers: list[tuple[str, str]] = []
        if retry_after is not None:
            headers.append(("retry-after", str(retry_after)))
        if answer.raw_body is not None:
            if answer.raw_body:
                headers.append(("content-type", answer.content_type or "text/html; charset=UTF-8"))
            return Reply(code, headers, answer.raw_body.encode()), answer.error_code
        status = answer.status_name or default_status
        details = [{"@type": FCM_ERROR, "errorCode": error_code}]
        body = error_body(code, status, answer.message or default_message, details)
        return Reply(code, [*headers, _JSON], body), error_code

    def _record(
        self,
        request: Request,
        message: dict[str, Any] | None,
        validate_only: bool,
        reply: Reply,
        reason: str | None,
        now: float,
    ) -> SimRecord:
        if message is None:
            message = _message_of(request.body)
        android = message.get("android") if message else None
        collapse_id = android.get("collapse_key") if isinstance(android, dict) else None
        data = message.get("data") if message else None
        tracking = data.get("trackingId") if isinstance(data, dict) else None
        message_id = None
        if reply.status == 200:
            message_id = json.loads(reply.body)["name"]
        token = _target(message) if message else ""
        return SimRecord(
            provider="fcm",
            token=token,
            tracking_id=tracking if isinstance(tracking, str) else collapse_id,
            collapse_id=collapse_id if isinstance(collapse_id, str) else None,
            status=reply.status,
            reason=reason,
            headers=_NO_HEADERS,
            payload=message if self.record_payloads else None,
            environment=None,
            validate_only=validate_only,
            received_at=now,
            message_id=message_id,
            display_key=_display_key(message, self._state.scenario.platforms.get(token)),
        )


# FCM records keep no headers; one shared (never mutated) dict spares a dict per record.
_NO_HEADERS: dict[str, str] = {}


def _display_key(message: dict[str, Any] | None, platform: Platform | None) -> str | None:
    """What the device replaces a shown notification by; None: every copy shows (no key, or
    a data-only message the app handles)."""
    if not message:
        return None
    android = message.get("android")
    apns = message.get("apns")
    if platform is None:
        platform = "ios" if isinstance(apns, dict) and not isinstance(android, dict) else "android"
    shown = isinstance(message.get("notification"), dict)
    if platform == "android":
        notification = android.get("notification") if isinstance(android, dict) else None
        if not (shown or isinstance(notification, dict)):
            return None
        tag = notification.get("tag") if isinstance(notification, dict) else None
        return tag if isinstance(tag, str) else None
    headers = apns.get("headers") if isinstance(apns, dict) else None
    payload = apns.get("payload") if isinstance(apns, dict) else None
    aps = payload.get("aps") if isinstance(payload, dict) else None
    if not (shown or (isinstance(aps, dict) and aps.get("alert"))):
        return None
    collapse_id = headers.get("apns-collapse-id") if isinstance(headers, dict) else None
    return collapse_id if isinstance(collapse_id, str) else None


def _target(message: dict[str, Any]) -> str:
    for key in ("token", "fid", "topic", "condition"):
        value = message.get(key)
        if isinstance(value, str):
            return value
    return ""


def _message_of(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, dict) else None
