"""Every provider answer lands in exactly one class (DESIGN.md decision 4).

The tables follow ../shared/reference/push-providers.md. Anything not in them gets a safe
class: it is retried a bounded number of times and never touches a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY_LATER = "retry_later"
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
}
APNS_REFRESH_CREDENTIALS = {(403, "ExpiredProviderToken"), (429, "TooManyProviderTokenUpdates")}
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


def classify_apns(status: int, reason: str | None, timestamp_ms: int | None) -> Outcome:
    """Class of an APNs answer. A 410 without a timestamp cannot be checked against the
    device's last registration, so it quarantines instead of invalidating."""
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


FCM_TOKEN_FIELD_HINTS = ("message.token", "registration token")


def classify_fcm(
    http_status: int, error_code: str | None, status_name: str | None, message: str
) -> Outcome:
    """Class of an FCM HTTP v1 answer; branches on details[].errorCode first, as Google
    advises (a NOT_FOUND status can also mean a wrong project)."""
    if 200 <= http_status < 300:
        return Outcome.DELIVERED
    code = error_code or ""
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
