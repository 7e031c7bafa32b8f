"""FCM HTTP v1 request checks: what Google rejects with 400 INVALID_ARGUMENT, and where.

Each failed check names the offending field the way Google's ``google.rpc.BadRequest`` detail
does, because tidings tells "this token is malformed" (invalidate it) from "this payload is
wrong" (a configuration fault) by the field: ``message.token`` versus anything else.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_MESSAGE_BYTES = 4096
MAX_TOKEN_CHARS = 4096
MAX_TTL_S = 2_419_200
TOKEN_INVALID = "The registration token is not a valid FCM registration token"
INVALID_ARGUMENT = "Request contains an invalid argument."
# `fid` (Firebase installation id) is the target firebase-admin 7.7 prefers over `token`.
TARGETS = ("token", "fid", "topic", "condition")
_MESSAGE_FIELDS = frozenset(
    {*TARGETS, "name", "data", "notification", "android", "webpush", "apns", "fcm_options"}
)
# An FCM registration token: URL-safe base64 characters, optionally behind a ``:``-separated
# prefix (today's tokens are ``<installation id>:APA91b...``, about 160 characters; older
# ones are a bare ``APA91b...``). Google publishes no grammar; this is the form every token
# it issues has, and what it answers "not a valid FCM registration token" for otherwise.
# The part after the prefix has at least 32 characters.
REGISTRATION_TOKEN = re.compile(r"(?:[A-Za-z0-9_-]+:)?[A-Za-z0-9_-]{32,}", re.ASCII)
# A Firebase installation id (the ``fid`` target): 22 URL-safe base64 characters.
INSTALLATION_ID = re.compile(r"[A-Za-z0-9_-]{22}", re.ASCII)
_TTL = re.compile(r"(\d+)(\.\d{1,9})?s")
_TOPIC = re.compile(r"[a-zA-Z0-9\-_.~%]+")


class InvalidArgument(Exception):
    """400 INVALID_ARGUMENT naming ``field``; ``message`` is the error's top-level message."""

    def __init__(self, field: str, description: str, message: str = INVALID_ARGUMENT) -> None:
        super().__init__(description)
        self.field = field
        self.description = description
        self.message = message


def parse_request(body: bytes) -> tuple[dict[str, Any], bool]:
    """(message, validate_only) of a ``messages:send`` body, or raise InvalidArgument."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        text = f"Invalid JSON payload received. {exc}"
        raise InvalidArgument("", text, text) from None
    if not isinstance(data, dict):
        text = "Invalid JSON payload received. Root element must be a message."
        raise InvalidArgument("", text, text)
    for name in data:
        if name not in ("message", "validate_only"):
            text = f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
            raise InvalidArgument(name, text, text)
    validate_only = data.get("validate_only", False)
    if not isinstance(validate_only, bool):
        raise InvalidArgument("validate_only", "validate_only must be a boolean")
    message = data.get("message")
    if not isinstance(message, dict):
        raise InvalidArgument("message", "The message is missing.")
    check_message(message)
    return message, validate_only


def check_message(message: dict[str, Any]) -> None:
    for name in message:
        if name not in _MESSAGE_FIELDS:
            text = (
                f"Invalid JSON payload received. Unknown name \"{name}\" at 'message': "
                "Cannot find field."
            )
            raise InvalidArgument("message", text, text)
    targets = [t for t in TARGETS if t in message]
    if len(targets) != 1:
        raise InvalidArgument(
            "message", "Exactly one of token, fid, topic or condition is required."
        )
    for target in ("token", "fid"):
        if target in message and not _well_formed_token(message[target], target):
            raise InvalidArgument(f"message.{target}", TOKEN_INVALID, TOKEN_INVALID)
    if "topic" in message and not (
        isinstance(message["topic"], str) and _TOPIC.fullmatch(message["topic"])
    ):
        raise InvalidArgument("message.topic", "Invalid topic name.")
    if "condition" in message and not (
        isinstance(message["condition"], str) and message["condition"].strip()
    ):
        raise InvalidArgument("message.condition", "Invalid condition expression.")
    _check_data(message.get("data"))
    _check_android(message.get("android"))
    for section in ("notification", "apns", "webpush", "fcm_options"):
        if section in message and not isinstance(message[section], dict):
            raise InvalidArgument(f"message.{section}", f"{section} must be an object.")
    content = {k: v for k, v in message.items() if k not in TARGETS}
    size = len(json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_MESSAGE_BYTES:
        raise InvalidArgument(
            "message", f"Message is too big: {size} bytes, the limit is {MAX_MESSAGE_BYTES}."
        )


def _well_formed_token(token: Any, target: str = "token") -> bool:
    """A registration token's form; the ``fid`` target (firebase-admin 7.7 sends registration
    tokens there too) also takes an installation id."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        return False
    if REGISTRATION_TOKEN.fullmatch(token):
        return True
    return target == "fid" and INSTALLATION_ID.fullmatch(token) is not None


def _check_data(data: Any) -> None:
    if data is None:
        return
    if not isinstance(data, dict):
        raise InvalidArgument("message.data", "data must be a map of strings.")
    for index, (key, value) in enumerate(data.items()):
        lowered = key.lower()
        if lowered in ("from", "message_type") or lowered.startswith(("google", "gcm")):
            raise InvalidArgument("message.data", f"Invalid data payload key: {key}")
        if not isinstance(value, str):
            text = (
                f"Invalid value at 'message.data[{index}].value' (TYPE_STRING), {json.dumps(value)}"
            )
            raise InvalidArgument(f"message.data[{index}].value", text, text)


def _check_android(android: Any) -> None:
    if android is None:
        return
    if not isinstance(android, dict):
        raise InvalidArgument("message.android", "android must be an object.")
    ttl = android.get("ttl")
    if ttl is not None:
        match = _TTL.fullmatch(ttl) if isinstance(ttl, str) else None
        if match is None or int(match.group(1)) > MAX_TTL_S:
            raise InvalidArgument(
                "message.android.ttl",
                f"Invalid value at 'message.android.ttl' (type.googleapis.com/"
                f"google.protobuf.Duration), {json.dumps(ttl)}; the range is 0s..{MAX_TTL_S}s",
            )
        if int(match.group(1)) == MAX_TTL_S and match.group(2) and float(match.group(2)) > 0:
            raise InvalidArgument("message.android.ttl", f"ttl must be at most {MAX_TTL_S}s")
    priority = android.get("priority")
    if priority is not None and (
        not isinstance(priority, str) or priority.lower() not in ("normal", "high")
    ):
        raise InvalidArgument(
            "message.android.priority",
            f"Invalid value at 'message.android.priority' "
            f"(type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), "
            f"{json.dumps(priority)}",
        )
    collapse_key = android.get("collapse_key")
    if collapse_key is not None and not isinstance(collapse_key, str):
        raise InvalidArgument("message.android.collapse_key", "collapse_key must be a string.")
