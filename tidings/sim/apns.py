"""The APNs simulator: Apple's HTTP/2 provider API, validated strictly, answered as Apple does.

Requests are checked in a fixed order (method and path, duplicate headers, authentication,
device token, topic, push type, the other ``apns-*`` headers, payload, environment), so one
bad request yields exactly one reason. Only a request that passes every check meets the
scenario (scripted answers, the percentage mix) and the unregistered tokens.

Provider tokens are limited per connection, as Apple applies ``TooManyProviderTokenUpdates``:
a connection that switches to a newer JWT sooner than the scenario's
``token_update_min_interval_s`` (20 minutes) after its previous one is refused. Several
processes sharing one signing key, each with its own connection and JWT, is normal.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .apns_auth import TOO_MANY_UPDATES, Denied, ProviderAuth
from .base import SimulatorBase
from .records import SimRecord
from .scenario import Answer
from .tls import CertificateAuthority
from .wire import ANSWER_LOST, Reply, Request, ServerConnection

PUSH_TYPES = frozenset(
    {
        "alert",
        "background",
        "voip",
        "complication",
        "fileprovider",
        "mdm",
        "liveactivity",
        "location",
        "pushtotalk",
    }
)
# Push types whose apns-topic is the bundle id plus a suffix.
TOPIC_SUFFIXES = (
    ".voip",
    ".complication",
    ".pushkit.fileprovider",
    ".push-type.liveactivity",
    ".location-query",
    ".voip-ptt",
)
SANDBOX_HOSTS = frozenset({"api.development.push.apple.com", "api.sandbox.push.apple.com"})
MAX_PAYLOAD = 4096
MAX_VOIP_PAYLOAD = 5120
MAX_COLLAPSE_ID = 64

# Apple's status for each reason, used when a scenario names only the reason (and the reverse).
REASON_STATUS = {
    "BadCollapseId": 400,
    "BadDeviceToken": 400,
    "BadExpirationDate": 400,
    "BadMessageId": 400,
    "BadPriority": 400,
    "BadTopic": 400,
    "DeviceTokenNotForTopic": 400,
    "DuplicateHeaders": 400,
    "IdleTimeout": 400,
    "InvalidPushType": 400,
    "MissingDeviceToken": 400,
    "MissingTopic": 400,
    "PayloadEmpty": 400,
    "TopicDisallowed": 400,
    "BadCertificate": 403,
    "BadCertificateEnvironment": 403,
    "ExpiredProviderToken": 403,
    "Forbidden": 403,
    "InvalidProviderToken": 403,
    "MissingProviderToken": 403,
    "UnrelatedKeyIdInToken": 403,
    "BadEnvironmentKeyInToken": 403,
    "BadPath": 404,
    "MethodNotAllowed": 405,
    "ExpiredToken": 410,
    "Unregistered": 410,
    "PayloadTooLarge": 413,
    "TooManyProviderTokenUpdates": 429,
    "TooManyRequests": 429,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
    "Shutdown": 503,
}
STATUS_REASON = {
    400: "BadDeviceToken",
    403: "Forbidden",
    404: "BadPath",
    405: "MethodNotAllowed",
    410: "Unregistered",
    413: "PayloadTooLarge",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}

# Apple answers 400 BadDeviceToken for a well-formed token it never issued. The simulator
# accepts every well-formed token (tests make tokens up) except this one: the token tidings'
# credential check sends to (tidings.push.check.CHECK_DEVICE_TOKEN), so a check meets Apple's
# answer and leaves no accepted push behind.
NEVER_ISSUED_TOKEN = "c0ffee" + "0" * 58
_TOKEN = re.compile(r"[0-9a-fA-F]{64,200}")
_TOPIC = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_JSON = [("content-type", "application/json")]


@dataclass(slots=True)
class _ConnState:
    cert_topics: tuple[str, ...] | None
    environment: str | None
    jwt_accepted: bool = False
    # The newest provider token this connection has presented: Apple limits how often a
    # connection changes it.
    token_iat: int | None = None
    # The last authorization header and its fingerprint: clients reuse one JWT for thousands
    # of requests, so it is hashed once.
    authorization: str | None = None
    fingerprint: str | None = None


class _Rejected(Exception):
    """A check failed: answer ``status`` with ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason


def _environment(server_name: str | None) -> str:
    return "sandbox" if server_name in SANDBOX_HOSTS else "production"


def _base_topic(topic: str) -> str:
    for suffix in TOPIC_SUFFIXES:
        if topic.endswith(suffix):
            return topic[: -len(suffix)]
    return topic


class ApnsSimulator(SimulatorBase):
    """Answers ``POST /3/device/<token>`` like api.push.apple.com and its sandbox."""

    provider = "apns"

    def __init__(self, ca: CertificateAuthority, *, record_payloads: bool = True) -> None:
        super().__init__(record_payloads=record_payloads)
        self.auth = ProviderAuth(ca)

    # -- credentials ------------------------------------------------------------------------

    def create_signing_key(self, team_id: str, key_id: str, topics: list[str]) -> str:
        """PKCS8 PEM of a fresh P-256 signing key; the sim keeps its public key and topics."""
        return self.auth.create_signing_key(team_id, key_id, topics)

    def create_client_certificate(self, topics: list[str]) -> tuple[str, str]:
        """(certificate PEM, key PEM) for certificate auth, signed by the simulators' CA."""
        return self.auth.create_client_certificate(topics)

    # -- wire.Handler -----------------------------------------------------------------------

    def initial_stream_limit(self, conn: ServerConnection) -> int:
        cert_topics = self.auth.certificate_topics(conn.peer_cert) if conn.peer_cert else None
        environment = _environment(conn.server_name) if conn.server_name else None
        conn.state = _ConnState(cert_topics=cert_topics, environment=environment)
        # Apple allows one stream until a connection has proven itself with a valid JWT.
        return self.scenario.max_concurrent_streams if cert_topics else 1

    def handle(self, request: Request, conn: ServerConnection) -> Reply:
        state: _ConnState = conn.state
        now = time.time()
        headers: dict[str, str] = {}
        duplicate = False
        method = path = authority = ""
        for name, value in request.headers:
            if name[0] == ":":
                if name == ":method":
                    method = value
                elif name == ":path":
                    path = value
                elif name == ":authority":
                    authority = value
            elif name in headers:
                duplicate = True
            else:
                headers[name] = value
        if state.environment is None:
            state.environment = _environment(authority or headers.get("host"))
        token = path[10:] if path.startswith("/3/device/") else ""
        # Echoed even when malformed (BadMessageId): clients match answers by this header.
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        payload: dict[str, Any] | None = None
        answer: Answer | None = None
        try:
            payload = self._check(
                request, conn, state, method, path, token, headers, now, duplicate
            )
            answer = self._state.next_answer(token)
            reply, reason = self._answer(answer, token, apns_id, state.environment)
        except _Rejected as rejected:
            reply, reason = self._error(rejected.status, rejected.reason, apns_id)
        if self._state.scenario.latency is not None or answer is not None:
            reply.delay_s = self._state.latency_s(answer)
        record = self._record(request, token, headers, payload, reply, reason, apns_id, state, now)
        return self._received(reply, record)

    # -- checks -----------------------------------------------------------------------------

    def _check(
        self,
        request: Request,
        conn: ServerConnection,
        state: _ConnState,
        method: str,
        path: str,
        token: str,
        headers: dict[str, str],
        now: float,
        duplicate: bool,
    ) -> dict[str, Any]:
        if method != "POST":
            raise _Rejected(405, "MethodNotAllowed")
        if path in ("/3/device", "/3/device/"):
            raise _Rejected(400, "MissingDeviceToken")
        if not path.startswith("/3/device/"):
            raise _Rejected(404, "BadPath")
        if duplicate:
            raise _Rejected(400, "DuplicateHeaders")
        allowed = self._authorize(conn, state, headers.get("authorization"), now)
        if len(token) % 2 or not _TOKEN.fullmatch(token):
            raise _Rejected(400, "BadDeviceToken")
        topic = headers.get("apns-topic")
        if topic is None:
            if state.cert_topics is None or len(state.cert_topics) != 1:
                raise _Rejected(400, "MissingTopic")
            topic = state.cert_topics[0]
        if not _TOPIC.fullmatch(topic):
            raise _Rejected(400, "BadTopic")
        if _base_topic(topic) not in allowed:
            raise _Rejected(400, "TopicDisallowed")
        push_type = headers.get("apns-push-type")
        if push_type is not None and push_type not in PUSH_TYPES:
            raise _Rejected(400, "InvalidPushType")
        priority = headers.get("apns-priority", "10")
        if priority not in ("1", "5", "10"):
            raise _Rejected(400, "BadPriority")
        expiration = headers.get("apns-expiration")
        if expiration is not None and not expiration.isdigit():
            raise _Rejected(400, "BadExpirationDate")
        collapse_id = headers.get("apns-collapse-id")
        if collapse_id is not None and len(collapse_id.encode()) > MAX_COLLAPSE_ID:
            raise _Rejected(400, "BadCollapseId")
        request_id = headers.get("apns-id")
        if request_id is not None and not _UUID.fullmatch(request_id):
            raise _Rejected(400, "BadMessageId")
        limit = MAX_VOIP_PAYLOAD if push_type == "voip" else MAX_PAYLOAD
        if len(request.body) > limit:
            raise _Rejected(413, "PayloadTooLarge")
        payload = self._payload(request.body)
        self._check_push_type(push_type, priority, payload)
        wanted = self._state.scenario.environments.get(token)
        if wanted is not None and wanted != state.environment:
            raise _Rejected(400, "BadDeviceToken")
        owner = self._state.scenario.token_topics.get(token)
        if owner is not None and owner != _base_topic(topic):
            raise _Rejected(400, "DeviceTokenNotForTopic")
        return payload

    def _authorize(
        self, conn: ServerConnection, state: _ConnState, authorization: str | None, now: float
    ) -> tuple[str, ...]:
        if state.cert_topics:
            return state.cert_topics
        scenario = self._state.scenario
        verified = self.auth.authorize(authorization, now)
        if isinstance(verified, Denied):
            raise _Rejected(verified.status, verified.reason)
        last = state.token_iat
        if last is None or verified.issued_at > last:
            interval = scenario.token_update_min_interval_s
            if last is not None and interval > 0 and verified.issued_at - last < interval:
                raise _Rejected(429, TOO_MANY_UPDATES)
            state.token_iat = verified.issued_at
        if not state.jwt_accepted:
            state.jwt_accepted = True
            conn.advertise_stream_limit(scenario.max_concurrent_streams)
        return verified.topics

    @staticmethod
    def _payload(body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not isinstance(payload.get("aps"), dict):
            raise _Rejected(400, "PayloadEmpty")
        return payload

    @staticmethod
    def _check_push_type(push_type: str | None, priority: str, payload: dict[str, Any]) -> None:
        aps: dict[str, Any] = payload["aps"]
        if push_type == "alert" and not aps.get("alert"):
            raise _Rejected(400, "InvalidPushType")
        if push_type == "background":
            if aps.get("content-available") != 1:
                raise _Rejected(400, "InvalidPushType")
            if priority != "5":
                raise _Rejected(400, "BadPriority")

    # -- answers ----------------------------------------------------------------------------

    def _answer(
        self, answer: Answer | None, token: str, apns_id: str, environment: str | None
    ) -> tuple[Reply, str | None]:
        if answer is not None and answer.action == "answer_lost":
            # Processed exactly as without the fault; the server then loses the answer.
            reply, reason = self._answer(
                answer.model_copy(update={"action": None}), token, apns_id, environment
            )
            reply.action = "answer_lost"
            return reply, reason if reason is not None else ANSWER_LOST
        if answer is not None and answer.action is not None:
            debug = {"reason": answer.reason or "Shutdown"}
            goaway = json.dumps(debug).encode() if answer.action == "goaway" else b""
            return Reply(status=0, action=answer.action, goaway_data=goaway), answer.action
        if answer is not None and (
            answer.reason is not None
            or answer.raw_body is not None
            or (answer.status is not None and answer.status != 200)
        ):
            return self._scripted(answer, apns_id)
        if token == NEVER_ISSUED_TOKEN:
            return self._error(400, "BadDeviceToken", apns_id)
        gone_at = self._unregistered.get(token)
        if gone_at is not None:
            body = {"reason": "Unregistered", "timestamp": gone_at}
            return self._error(410, "Unregistered", apns_id, body=body)
        headers = [("apns-id", apns_id)]
        if environment == "sandbox":
            headers.append(("apns-unique-id", str(uuid.uuid4())))
        if answer is not None and answer.retry_after_s is not None:
            headers.append(("retry-after", str(answer.retry_after_s)))
        return Reply(status=200, headers=headers), None

    def _scripted(self, answer: Answer, apns_id: str) -> tuple[Reply, str | None]:
        reason = answer.reason
        status = answer.status or REASON_STATUS.get(reason or "", 500)
        reason = reason or STATUS_REASON.get(status, "InternalServerError")
        headers = [("apns-id", apns_id)]
        if answer.retry_after_s is not None:
            headers.append(("retry-after", str(answer.retry_after_s)))
        if answer.raw_body is not None:
            if answer.raw_body:
                headers.append(("content-type", answer.content_type or "text/plain"))
            return Reply(status, headers, answer.raw_body.encode()), reason
        body: dict[str, Any] = {"reason": reason}
        if status == 410 and answer.timestamp_ms is not None:
            body["timestamp"] = answer.timestamp_ms
        return Reply(status, headers + _JSON, json.dumps(body).encode()), reason

    @staticmethod
    def _error(
        status: int, reason: str, apns_id: str, body: dict[str, Any] | None = None
    ) -> tuple[Reply, str]:
        data = json.dumps(body or {"reason": reason}).encode()
        return Reply(status, [("apns-id", apns_id), *_JSON], data), reason

    def _record(
        self,
        request: Request,
        token: str,
        headers: dict[str, str],
        payload: dict[str, Any] | None,
        reply: Reply,
        reason: str | None,
        apns_id: str,
        state: _ConnState,
        now: float,
    ) -> SimRecord:
        if payload is None and request.body:
            try:
                parsed = json.loads(request.body)
            except ValueError:
                parsed = None
            payload = parsed if isinstance(parsed, dict) else None
        collapse_id = headers.get("apns-collapse-id")
        tracking = payload.get("trackingId") if payload is not None else None
        tracking_id = tracking if isinstance(tracking, str) else collapse_id
        authorization = headers.get("authorization")
        if authorization != state.authorization:
            state.authorization = authorization
            state.fingerprint = (
                hashlib.sha256(authorization.encode()).hexdigest()[:16] if authorization else None
            )
        keep = self.record_payloads
        return SimRecord(
            provider="apns",
            token=token,
            tracking_id=tracking_id,
            collapse_id=collapse_id,
            status=reply.status,
            reason=reason,
            headers={k: v for k, v in headers.items() if k.startswith("apns-")}
            if keep
            else _NO_HEADERS,
            payload=payload if keep else None,
            environment=state.environment,
            validate_only=False,
            received_at=now,
            message_id=apns_id,
            provider_token=state.fingerprint,
            display_key=collapse_id if _shows_alert(payload) else None,
        )


# Records without headers share one (never mutated) dict rather than holding one each.
_NO_HEADERS: dict[str, str] = {}


def _shows_alert(payload: dict[str, Any] | None) -> bool:
    """A notification the system shows (and replaces by collapse id); a background push is
    handed to the app, which sees every copy."""
    aps = payload.get("aps") if payload is not None else None
    return isinstance(aps, dict) and bool(aps.get("alert"))
