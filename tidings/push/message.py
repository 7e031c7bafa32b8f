"""One content model, rendered for both providers.

``PushFields`` is what a push says, whichever provider carries it. A journey's
:class:`~tidings.journeys.model.PushContent` holds the same fields as templates; once rendered
for one profile they become a :class:`PushMessage`, written here as an APNs payload and as an
FCM HTTP v1 message.

The tracking id travels in the data (key ``trackingId``, the key Customer Insights - Journeys
apps read, beside ``title``, ``body``, ``imageUrl``, ``link`` and ``originalLink``) and is the
collapse id on both providers, so a duplicate sent in a crash window collapses on the device.
Custom data values are strings on both providers (FCM accepts nothing else), so an app reads
the same values whichever provider delivered the push.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tidings.push.links import tracked_link

APNS_MAX_PAYLOAD_BYTES = 4096
FCM_MAX_MESSAGE_BYTES = 4096
MAX_TTL_S = 2_419_200
# FCM rejects these data keys; "aps" would clash with the APNs dictionary and "trackingId" is
# tidings' own.
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type", "aps", "trackingId"})
RESERVED_DATA_PREFIXES = ("google", "gcm")
# Any well-formed tracking id has this length: the size check needs no real one.
SIZE_CHECK_TRACKING_ID = "00000000-0000-0000-0000-000000000000"

InterruptionLevel = Literal["passive", "active", "time-sensitive", "critical"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApnsOptions(_Frozen):
    """What only iOS (APNs, or FCM's APNs section) understands, or an iOS-specific override."""

    interruption_level: InterruptionLevel | None = None
    relevance_score: float | None = Field(default=None, ge=0, le=1)
    sound: str | None = Field(default=None, description="overrides `sound` on iOS")
    category: str | None = Field(default=None, description="overrides `category` on iOS")


class AndroidOptions(_Frozen):
    """What only Android understands, or an Android-specific override."""

    channel_id: str | None = None
    click_action: str | None = Field(
        default=None, description="overrides `category` (the click action) on Android"
    )
    sound: str | None = Field(default=None, description="overrides `sound` on Android")
    icon: str | None = None
    color: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$")
    tag: str | None = Field(
        default=None, description="a notification with the same tag replaces this one"
    )


class PushFields(_Frozen):
    """The fields of a push, common to the content model and the rendered message."""

    title: str | None = None
    subtitle: str | None = Field(default=None, description="iOS only")
    body: str | None = None
    image_url: str | None = None
    link: str | None = Field(default=None, description="deep link, in the data as link")
    data: dict[str, str] = Field(
        default_factory=dict, description="custom data; numbers and booleans become strings"
    )
    badge: int | None = Field(default=None, ge=0)
    sound: str | None = None
    category: str | None = Field(
        default=None, description="APNs category; the click action on Android"
    )
    thread_id: str | None = Field(default=None, description="APNs thread-id (grouping)")
    mutable_content: bool = False
    push_type: Literal["alert", "background"] = "alert"
    priority: Literal["high", "normal"] = "high"
    apns: ApnsOptions = Field(default_factory=ApnsOptions)
    android: AndroidOptions = Field(default_factory=AndroidOptions)

    @field_validator("data", mode="before")
    @classmethod
    def _string_values(cls, value: Any) -> Any:
        """FCM data values are strings: numbers and booleans are written as JSON text, so
        both providers carry the same value."""
        if not isinstance(value, dict):
            return value
        converted: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(item, bool | int | float):
                converted[key] = json.dumps(item)
            else:
                converted[key] = item
        return converted

    @field_validator("data")
    @classmethod
    def _allowed_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key:
                raise ValueError("a data key cannot be empty")
            if key in RESERVED_DATA_KEYS or key.lower().startswith(RESERVED_DATA_PREFIXES):
                raise ValueError(
                    f"data key {key!r} is reserved (from, notification, message_type, aps, "
                    "trackingId, and keys starting with google or gcm)"
                )
        return value


class PushMessage(PushFields):
    """What one profile's devices receive for one push node, after template rendering."""

    ttl_s: int | None = Field(default=None, ge=0, le=MAX_TTL_S)

    def custom_data(self, tracking_id: str) -> dict[str, str]:
        data = dict(self.data)
        data["trackingId"] = tracking_id
        # link: the tracked redirect when this process tracks links (tidings.push.links; the
        # size check counts it too); originalLink: always the raw link
        link = tracked_link(tracking_id, self.link) if self.link is not None else None
        for key, value in (
            ("title", self.title),
            ("body", self.body),
            ("imageUrl", self.image_url),
            ("link", link),
            ("originalLink", self.link),
        ):
            if value is not None:
                data.setdefault(key, value)
        return data

    @property
    def is_background(self) -> bool:
        return self.push_type == "background"

    @property
    def apns_sound(self) -> str | None:
        return self.apns.sound or self.sound

    @property
    def apns_category(self) -> str | None:
        return self.apns.category or self.category

    @property
    def android_sound(self) -> str | None:
        return self.android.sound or self.sound

    @property
    def android_click_action(self) -> str | None:
        return self.android.click_action or self.category


def apns_priority(message: PushMessage) -> int:
    """10 sends at once; 5 saves power. Apple rejects background pushes with priority 10."""
    if message.is_background or message.priority == "normal":
        return 5
    return 10


def aps_dictionary(message: PushMessage) -> dict[str, Any]:
    """The ``aps`` dictionary, shared by direct APNs sends and FCM's APNs section."""
    if message.is_background:
        return {"content-available": 1}
    aps: dict[str, Any] = {}
    alert = {
        key: value
        for key, value in (
            ("title", message.title),
            ("subtitle", message.subtitle),
            ("body", message.body),
        )
        if value is not None
    }
    aps["alert"] = alert or {"body": ""}
    if message.apns_sound:
        aps["sound"] = message.apns_sound
    if message.badge is not None:
        aps["badge"] = message.badge
    if message.apns_category:
        aps["category"] = message.apns_category
    if message.thread_id:
        aps["thread-id"] = message.thread_id
    # an image needs the app's notification service extension, which needs mutable-content
    if message.mutable_content or message.image_url:
        aps["mutable-content"] = 1
    if message.apns.interruption_level:
        aps["interruption-level"] = message.apns.interruption_level
    if message.apns.relevance_score is not None:
        aps["relevance-score"] = message.apns.relevance_score
    return aps


def fcm_aps_dictionary(message: PushMessage) -> dict[str, Any]:
    """The ``aps`` of FCM's APNs section: FCM writes the notification's title and body into
    the alert itself, so only what it cannot know is repeated (the subtitle, sound, badge...)."""
    aps = aps_dictionary(message)
    alert = aps.pop("alert", None)
    if isinstance(alert, dict) and alert.get("subtitle") is not None:
        aps["alert"] = {"subtitle": alert["subtitle"]}
    return aps


def apns_payload(message: PushMessage, tracking_id: str) -> dict[str, Any]:
    """The JSON body of a direct APNs request: ``aps`` plus the custom data at the top level."""
    payload: dict[str, Any] = {"aps": aps_dictionary(message)}
    payload.update(message.custom_data(tracking_id))
    return payload


def fcm_apns_headers(
    message: PushMessage, tracking_id: str, expiration: int | None
) -> dict[str, str]:
    """Headers FCM forwards to APNs for iOS devices registered through FCM: the same collapse
    id, priority, push type and expiry as a direct APNs send."""
    headers = {
        "apns-collapse-id": tracking_id,
        "apns-priority": str(apns_priority(message)),
        "apns-push-type": message.push_type,
    }
    if expiration is not None:
        headers["apns-expiration"] = str(expiration)
    return headers


def fcm_message_dict(
    message: PushMessage,
    token: str,
    tracking_id: str,
    *,
    ttl_s: int | None = None,
    expiration: int | None = None,
) -> dict[str, Any]:
    """The HTTP v1 ``message`` object, exactly as firebase-admin encodes the message that
    tidings.push.fcm builds (tests/push/test_message.py holds the two together). Used for the
    size check before any send."""
    body: dict[str, Any] = {"token": token, "data": message.custom_data(tracking_id)}
    if not message.is_background:
        notification = {
            key: value
            for key, value in (
                ("title", message.title),
                ("body", message.body),
                ("image", message.image_url),
            )
            if value is not None
        }
        if notification:
            body["notification"] = notification
    android: dict[str, Any] = {"collapse_key": tracking_id, "priority": message.priority}
    if ttl_s is not None:
        android["ttl"] = f"{ttl_s}s"
    android_notification = _android_notification(message, tracking_id)
    if android_notification:
        android["notification"] = android_notification
    body["android"] = android
    apns: dict[str, Any] = {"headers": fcm_apns_headers(message, tracking_id, expiration)}
    aps = fcm_aps_dictionary(message)
    if aps:  # a plain alert needs none: FCM writes title and body into it
        apns["payload"] = {"aps": aps}
    if message.image_url and not message.is_background:
        apns["fcm_options"] = {"image": message.image_url}
    body["apns"] = apns
    return body


def android_tag(message: PushMessage, tracking_id: str) -> str:
    """The notification's tag: a shown notification with the same tag is replaced. FCM's
    collapse_key only replaces a message not yet delivered, so without a tag an online device
    would show a resent copy (after a lost answer or a worker crash) as a second notification.
    A designer's own tag wins: its pushes then replace each other, resent copies included."""
    return message.android.tag or tracking_id


def _android_notification(message: PushMessage, tracking_id: str) -> dict[str, Any]:
    if message.is_background:
        return {}
    options = message.android
    fields: dict[str, Any] = {
        "channel_id": options.channel_id,
        "click_action": message.android_click_action,
        "sound": message.android_sound,
        "icon": options.icon,
        "color": options.color,
        "tag": android_tag(message, tracking_id),
        "notification_count": message.badge,
    }
    return {key: value for key, value in fields.items() if value is not None}


def encoded_size(payload: dict[str, Any]) -> int:
    """Size in UTF-8 bytes, as the providers count it."""
    return len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def payload_sizes(message: PushMessage) -> dict[str, int]:
    """UTF-8 size of what each provider receives: the APNs payload, and the FCM message
    without its target (any tracking id has the same length; the TTL is counted at its
    longest)."""
    tracking_id = SIZE_CHECK_TRACKING_ID
    fcm = fcm_message_dict(message, "", tracking_id, ttl_s=message.ttl_s, expiration=9_999_999_999)
    del fcm["token"]
    return {"apns": encoded_size(apns_payload(message, tracking_id)), "fcm": encoded_size(fcm)}


def size_problem(message: PushMessage) -> str | None:
    """Why the providers would refuse this push for its size, or None."""
    limits = {"apns": APNS_MAX_PAYLOAD_BYTES, "fcm": FCM_MAX_MESSAGE_BYTES}
    for provider, size in payload_sizes(message).items():
        if size > limits[provider]:
            name = "APNs" if provider == "apns" else "FCM"
            return (
                f"the payload is {size} bytes in UTF-8 for {name}, over the providers' "
                f"{limits[provider]}-byte limit"
            )
    return None
