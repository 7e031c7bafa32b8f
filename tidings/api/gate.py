"""What every request passes before a router reads it.

- The native API's key (``Authorization: Bearer``) is checked from the headers first: a
  request without a valid key is answered 401 (429 once its address failed too often, see
  tidings.api.throttle) before a byte of its body is read.
- Bodies are capped per route (``body_limit``): a declared ``Content-Length`` over the cap is
  answered 413 at once, and a body streamed without one is cut off as soon as it passes the
  cap; the 413 names the limit. Nothing reads past it.
- The compatible surface takes ``{PublicEndpoint}/api/...`` with the doubled slash Microsoft's
  samples build when ``PublicEndpoint`` ends in ``/``.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.api.deps import (
    CALLER_SCOPE_KEY,
    MISSING_KEY,
    UNKNOWN_KEY,
    ApiState,
    caller_for,
    refused,
)
from tidings.api.errors import error_response
from tidings.api.throttle import source_of

KEYED_PREFIX = "/v1"
COMPAT_PREFIX = "/compat/ci-journeys/"

# A 100-item batch of the longest valid tokens (FCM's 4 KB) takes under half of the default.
DEFAULT_BODY_LIMIT = 1 << 20
# The compatible surface's single items carry their key in the body, so anyone may send one
# and it is read before the key is known: no more than the longest item needs.
COMPAT_ITEM_BODY_LIMIT = 128 << 10
# A bulk import is streamed and written a chunk at a time; this bounds one request's work.
IMPORT_BODY_LIMIT = 512 << 20
IMPORT_PATH = "/v1/profiles/import"


def body_limit(path: str) -> int:
    """The most a request body to ``path`` (a request's path or a route's template) may hold."""
    if path.startswith(COMPAT_PREFIX) and not path.rstrip("/").endswith("/batch"):
        return COMPAT_ITEM_BODY_LIMIT
    if path == IMPORT_PATH:
        return IMPORT_BODY_LIMIT
    return DEFAULT_BODY_LIMIT


def size_text(size: int) -> str:
    if size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size % (1 << 10) == 0:
        return f"{size >> 10} KiB"
    return f"{size} bytes"


def too_large_message(limit: int) -> str:
    return f"the request body is larger than this route takes: at most {size_text(limit)}"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its cap; FastAPI lets an HTTPException of the
    body reader through, so it is answered in the one error shape."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(limit))


class CompatSlashes:
    """``//`` in a compat path is one ``/``: the samples join ``{PublicEndpoint}/api/...``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(COMPAT_PREFIX) and "//" in path:
            scope = dict(scope)
            scope["path"] = re.sub("/{2,}", "/", path)
            scope["raw_path"] = re.sub(rb"/{2,}", b"/", scope.get("raw_path") or path.encode())
        await self.app(scope, receive, send)


class BearerFirst:
    """Authenticates the native API from the headers before its body is read; the caller is
    left in the scope for the routes' ``authenticate`` dependency."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (
            path == KEYED_PREFIX or path.startswith(KEYED_PREFIX + "/")
        ):
            await self.app(scope, receive, send)
            return
        state: ApiState = scope["app"].state.tidings
        scheme, key = get_authorization_scheme_param(Headers(scope=scope).get("authorization"))
        caller = await caller_for(state, key) if scheme.lower() == "bearer" and key else None
        if caller is None:
            error = refused(state, source_of(scope), UNKNOWN_KEY if key else MISSING_KEY)
            answer = error_response(error.status, error.code, error.message, headers=error.headers)
            await answer(scope, receive, send)
            return
        scope[CALLER_SCOPE_KEY] = caller
        await self.app(scope, receive, send)


class BodyLimit:
    """Caps request bodies (``body_limit``) without reading past the cap."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope.get("path", ""))
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, sending)
        except BodyTooLarge:
            # read outside FastAPI's body reader (which answers it itself)
            if started:
                raise
            await _too_large(limit)(scope, receive, send)


def _too_large(limit: int) -> ASGIApp:
    return error_response(413, "too_large", too_large_message(limit))


def install_gates(app: FastAPI) -> None:
    """Outermost first: slashes, then the key, then the body cap."""
    app.add_middleware(BodyLimit)
    app.add_middleware(BearerFirst)
    app.add_middleware(CompatSlashes)
