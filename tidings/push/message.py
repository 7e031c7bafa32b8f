"""A rendered push and how it is written for each provider.

One content model renders to both APNs and FCM. The tracking id travels in the data (key
``trackingId``, the key Customer Insights - Journeys apps read) and is the collapse id, so a
duplicate sent in a crash window collapses on the device.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

APNS_MAX_PAYLOAD_BYTES = 4096
FCM_MAX_MESSAGE_BYTES = 4096


class PushMessage(BaseModel):
    """What one profile's devices receive for one push node, after template rendering."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str | None = None
    subtitle: str | None = None
    body: str | None = None
    image_url: str | None = None
    link: str | None = None
    data: dict[str, str] = Field(default_factory=dict)
    badge: int | None = None
    sound: str | None = None
    category: str | None = None
    thread_id: str | None = None
    mutable_content: bool = False
    push_type: Literal["alert", "background"] = "alert"
    priority: Literal["high", "normal"] = "high"
    android_channel_id: str | None = None
    interruption_level: Literal["passive", "active", "time-sensitive", "critical"] | None = None
    ttl_s: int | None = Field(default=None, ge=0, le=2_419_200)

    def custom_data(self, tracking_id: str) -> dict[str, str]:
        data = dict(self.data)
        data["trackingId"] = tracking_id
        for key, value in (
            ("title", self.title),
            ("body", self.body),
            ("imageUrl", self.image_url),
            ("link", self.link),
            ("originalLink", self.link),
        ):
            if value is not None:
                data.setdefault(key, value)
        return data


def apns_payload(message: PushMessage, tracking_id: str) -> dict[str, Any]:
    aps: dict[str, Any] = {}
    if message.push_type == "background":
        aps["content-available"] = 1
    else:
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
        if message.sound:
            aps["sound"] = message.sound
        if message.badge is not None:
            aps["badge"] = message.badge
        if message.category:
            aps["category"] = message.category
        if message.thread_id:
            aps["thread-id"] = message.thread_id
        if message.mutable_content or message.image_url:
            aps["mutable-content"] = 1
        if message.interruption_level:
            aps["interruption-level"] = message.interruption_level
    payload: dict[str, Any] = {"aps": aps}
    payload.update(message.custom_data(tracking_id))
    return payload


def apns_priority(message: PushMessage) -> int:
    # Apple rejects background pushes with priority 10.
    if message.push_type == "background" or message.priority == "normal":
        return 5
    return 10


def fcm_message_dict(message: PushMessage, token: str, tracking_id: str) -> dict[str, Any]:
    """The HTTP v1 ``message`` object (used for the size check; firebase-admin encodes the
    same fields from its Message class)."""
    body: dict[str, Any] = {"token": token, "data": message.custom_data(tracking_id)}
    if message.push_type == "alert":
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
    if message.ttl_s is not None:
        android["ttl"] = f"{message.ttl_s}s"
    body["android"] = android
    return body


def encoded_size(payload: dict[str, Any]) -> int:
    """Size in UTF-8 bytes, as the providers count it."""
    return len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def ttl(message: PushMessage) -> timedelta | None:
    return None if message.ttl_s is None else timedelta(seconds=message.ttl_s)
