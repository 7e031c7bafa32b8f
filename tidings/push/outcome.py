"""Every provider answer lands in exactly one class (DESIGN.md decision 4).

The tables follow ../shared/reference/push-providers.md; tests/push/test_outcome.py and the
table-driven tests/delivery/test_provider_tables.py hold every row. Anything not in them gets
a safe class: it is retried a bounded number of times, never touches a token, and the sender
logs the raw answer (``SendResult.known`` is False).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY_LATER = "retry_later"
    # the request was sent whole and its answer never came (a reset, a timeout): the push
    # may have been delivered. Retried like RETRY_LATER, with the same apns-id and collapse
    # id, and counted as a possible duplicate; never a reason to touch the token.
    ANSWER_LOST = "answer_lost"
    REFRESH_CREDENTIALS = "refresh_credentials"
    TOKEN_GONE = "token_gone"
    TOKEN_SUSPECT = "token_suspect"
    CONFIG_FAULT = "config_fault"


@dataclass(frozen=True, slots=True)
class SendResult:
    """One provider answer, classified. ``raw`` keeps unknown answers for the logs."""

    outcome: Outcome
    status: int | None = None
    reason: str | None = None
    message_id: str | None = None
    retry_after_s: float | None = None
    # APNs 410: the moment Apple learnt the token was gone.
    gone_at: datetime | None = None
    raw: str | None = None
    # False for an answer outside the reference tables (given a safe class, logged raw)
    known: bool = True

    @property
    def describe(self) -> str:
        parts = [str(self.status) if self.status is not None else "no answer"]
        if self.reason:
            parts.append(self.reason)
        return " ".join(parts)


APNS_RETRY_LATER = {
    (429, "TooManyRequests"),
    (500, "InternalServerError"),
    (503, "ServiceUnavailable"),
    (503, "Shutdown"),
    (400, "IdleTimeout"),
    # Not in the reference table. Apple: the key id differs from the one the connection first
    # used; a new connection takes it. tidings keeps one key per client (a rotation builds a
    # new client), so this is transient by construction.
    (403, "UnrelatedKeyIdInToken"),
}
# Apple refuses a team's provider-token updates more often than every 20 minutes: a push
# answered so waits (DESIGN.md decision 5 keeps one JWT per key), and no new JWT is minted.
APNS_TOKEN_UPDATES = "TooManyProviderTokenUpdates"
APNS_REFRESH_CREDENTIALS = {(403, "ExpiredProviderToken"), (429, APNS_TOKEN_UPDATES)}
APNS_TOKEN_GONE = {(410, "Unregistered"), (410, "ExpiredToken")}
APNS_TOKEN_SUSPECT = {(400, "BadDeviceToken"), (400, "DeviceTokenNotForTopic")}
APNS_CONFIG_FAULT = {
    *(
        (400, reason)
        for reason in (
            "BadCollapseId",
            "BadExpirationDate",
            "BadMessageId",
            "BadPriority",
            "BadTopic",
            "DuplicateHeaders",
            "InvalidPushType",
            "MissingDeviceToken",
            "MissingTopic",
            "PayloadEmpty",
            "TopicDisallowed",
        )
    ),
    *(
        (403, reason)
        for reason in (
            "BadCertificate",
            "BadCertificateEnvironment",
            "Forbidden",
            "InvalidProviderToken",
            "MissingProviderToken",
            "BadEnvironmentKeyInToken",
        )
    ),
    (404, "BadPath"),
    (405, "MethodNotAllowed"),
    (413, "PayloadTooLarge"),
}


class FaultScope(StrEnum):
    """What a configuration fault is about. ``APP``: the credentials or the app's setup
    (key, certificate, team, topic, project, permission): every send of that provider for the
    app would fail the same way, so the app's sends to it stop until someone fixes them.
    ``MESSAGE``: this push (its payload, its headers): other pushes of the app go on."""

    APP = "app"
    MESSAGE = "message"


# APNs configuration faults about one request, not the credentials or the topic.
APNS_MESSAGE_FAULTS = frozenset(
    {
        "PayloadTooLarge",
        "BadCollapseId",
        "BadExpirationDate",
        "BadMessageId",
        "BadPriority",
        "InvalidPushType",
        "PayloadEmpty",
        "DuplicateHeaders",
        "MissingDeviceToken",
        "BadPath",
        "MethodNotAllowed",
    }
)
# FCM: INVALID_ARGUMENT (a bad *token* is classed gone before it gets here) is about the
# payload; THIRD_PARTY_AUTH_ERROR, PERMISSION_DENIED, a wrong project or a refused service
# account are about the app.
FCM_MESSAGE_FAULT_PREFIX = "INVALID_ARGUMENT"


def fault_scope(provider: str, result: SendResult) -> FaultScope:
    """Whether a configuration fault stops the app's sends to ``provider`` or fails only this
    push. Anything not known to be about the message stops the app: a fault that is not
    understood must not be repeated for every push of every journey."""
    reason = result.reason or ""
    if provider == "apns" and reason in APNS_MESSAGE_FAULTS:
        return FaultScope.MESSAGE
    if provider == "fcm" and reason.startswith(FCM_MESSAGE_FAULT_PREFIX):
        return FaultScope.MESSAGE
    return FaultScope.APP


def apns_known(status: int, reason: str | None, timestamp_ms: int | None) -> bool:
    """Whether an APNs answer is one the reference table lists (a 410 must carry its
    timestamp)."""
    if status == 200:
        return True
    key = (status, reason or "")
    if key in APNS_TOKEN_GONE:
        return timestamp_ms is not None
    return any(
        key in table
        for table in (
            APNS_RETRY_LATER,
            APNS_REFRESH_CREDENTIALS,
            APNS_TOKEN_SUSPECT,
            APNS_CONFIG_FAULT,
        )
    )


def classify_apns(status: int, reason: str | None, timestamp_ms: int | None) -> Outcome:
    """Class of an APNs answer. A 410 without a timestamp cannot be checked against the
    device's last registration, so it quarantines (kept, not targeted) instead of
    invalidating; any other unknown answer is retried."""
    if status == 200:
        return Outcome.DELIVERED
    key = (status, reason or "")
    if key in APNS_TOKEN_GONE:
        return Outcome.TOKEN_GONE if timestamp_ms is not None else Outcome.TOKEN_SUSPECT
    if key in APNS_RETRY_LATER:
        return Outcome.RETRY_LATER
    if key in APNS_REFRESH_CREDENTIALS:
        return Outcome.REFRESH_CREDENTIALS
    if key in APNS_TOKEN_SUSPECT:
        return Outcome.TOKEN_SUSPECT
    if key in APNS_CONFIG_FAULT:
        return Outcome.CONFIG_FAULT
    return Outcome.RETRY_LATER


def apns_gone_at(timestamp_ms: int | None) -> datetime | None:
    if timestamp_ms is None:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


# A bad *token* names the target field (``message.token``, or ``message.fid`` since
# firebase-admin 7.7) or says "not a valid FCM registration token"; a bad *payload* names
# another field.
FCM_TOKEN_FIELD_HINTS = ("message.token", "message.fid", "registration token")
FCM_QUOTA_REASONS = frozenset({"QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED"})
FCM_KNOWN_CODES = frozenset(
    {
        "UNREGISTERED",
        "SENDER_ID_MISMATCH",
        "QUOTA_EXCEEDED",
        "UNAVAILABLE",
        "INTERNAL",
        "THIRD_PARTY_AUTH_ERROR",
        "APNS_AUTH_ERROR",
        "INVALID_ARGUMENT",
    }
)
FCM_KNOWN_STATUSES = frozenset({"INVALID_ARGUMENT", "PERMISSION_DENIED", "NOT_FOUND"})


def fcm_known(http_status: int, error_code: str | None, status_name: str | None) -> bool:
    """Whether an FCM answer is one the reference table lists: a success, a listed
    errorCode, a permission or project error, or an expired access token (401)."""
    if 200 <= http_status < 300:
        return True
    if error_code is not None:
        return error_code in FCM_KNOWN_CODES
    return status_name in FCM_KNOWN_STATUSES or (
        http_status == 401 and status_name == "UNAUTHENTICATED"
    )


def classify_fcm(
    http_status: int, error_code: str | None, status_name: str | None, message: str
) -> Outcome:
    """Class of an FCM HTTP v1 answer; branches on details[].errorCode first, as Google
    advises (a NOT_FOUND status can also mean a wrong project). An errorCode outside the
    table is retried (bounded), whatever its HTTP status."""
    if 200 <= http_status < 300:
        return Outcome.DELIVERED
    code = error_code or ""
    if code and code not in FCM_KNOWN_CODES:
        return Outcome.RETRY_LATER
    if code == "UNREGISTERED":
        return Outcome.TOKEN_GONE
    if code == "SENDER_ID_MISMATCH":
        return Outcome.TOKEN_SUSPECT
    if code in ("QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"):
        return Outcome.RETRY_LATER
    if code in ("THIRD_PARTY_AUTH_ERROR", "APNS_AUTH_ERROR"):
        return Outcome.CONFIG_FAULT
    if code == "INVALID_ARGUMENT" or status_name == "INVALID_ARGUMENT":
        lowered = message.lower()
        if any(hint in lowered for hint in FCM_TOKEN_FIELD_HINTS):
            return Outcome.TOKEN_GONE
        return Outcome.CONFIG_FAULT
    if status_name in ("PERMISSION_DENIED", "NOT_FOUND") or http_status in (403, 404):
        return Outcome.CONFIG_FAULT
    if http_status == 401 or status_name == "UNAUTHENTICATED":
        return Outcome.REFRESH_CREDENTIALS
    return Outcome.RETRY_LATER
