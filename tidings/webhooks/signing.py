"""How a receiver knows a webhook came from tidings, as Svix and Stripe do it.

Each request carries ``webhook-id`` (the event's id, the same on every attempt: a receiver
drops a repeat), ``webhook-timestamp`` (Unix seconds when this attempt was signed: a
receiver refuses old ones, so a captured request cannot be replayed later) and
``webhook-signature: v1,<base64 HMAC-SHA256>`` keyed with the endpoint's secret (its UTF-8
text, ``whsec_...``) over ``"{timestamp}.{body}"``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
VERSION = "v1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64>``: HMAC-SHA256 of ``{timestamp}.{body}`` keyed with the secret."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(secret: str, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def verify(
    secret: str, headers: dict[str, str], body: bytes, now: int, tolerance_s: int = 300
) -> bool:
    """What a receiver written in Python does: the timestamp is recent and one of the
    signatures (space-separated, while a secret changes) matches."""
    try:
        timestamp = int(headers[TIMESTAMP_HEADER])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    offered = headers.get(SIGNATURE_HEADER, "").split()
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)
