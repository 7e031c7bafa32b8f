"""The console's session: a cookie holding its expiry, signed with a key derived from the
admin key. Changing the admin key ends every session; nothing is stored server-side."""

from __future__ import annotations

import hashlib
import hmac
import time

COOKIE = "tidings_console"
LIFETIME_S = 12 * 3600


def _signing_key(admin_key: str) -> bytes:
    return hashlib.sha256(b"tidings console session\0" + admin_key.encode()).digest()


def _signature(admin_key: str, expires: int) -> str:
    return hmac.new(_signing_key(admin_key), str(expires).encode(), hashlib.sha256).hexdigest()


def new_session(admin_key: str, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + LIFETIME_S)
    return f"{expires}.{_signature(admin_key, expires)}"


def valid_session(admin_key: str, cookie: str | None, now: float | None = None) -> bool:
    if not cookie or "." not in cookie:
        return False
    text, _, signature = cookie.partition(".")
    if not text.isdigit():
        return False
    expires = int(text)
    if expires < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature, _signature(admin_key, expires))


def is_admin_key(admin_key: str, candidate: str) -> bool:
    return hmac.compare_digest(candidate.encode(), admin_key.encode())
