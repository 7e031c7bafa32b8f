"""Counting API requests by route template (never by raw path: ids would be labels)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.observe.context import bound
from tidings.observe.metrics import API_LATENCY, API_REQUESTS

access_log = logging.getLogger("tidings.api.access")
REQUEST_ID_HEADER = b"x-request-id"
# a caller's request id is kept only when it cannot smuggle anything into a log line
_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")

UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED


class RequestMetrics:
    """Outermost middleware: every answer counts, refused ones (401, 413, 429) included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id = request_id_of(scope)

        async def remember_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        with bound(request_id=request_id):
            try:
                await self.app(scope, receive, remember_status)
            finally:
                method = scope.get("method", "GET")
                route = route_template(scope)
                elapsed = time.perf_counter() - started
                API_REQUESTS.labels(method, route, str(status)).inc()
                API_LATENCY.labels(method, route).observe(elapsed)
                access_log.debug(
                    "%s %s %d %.1fms",
                    method,
                    route,
                    status,
                    elapsed * 1000,
                    extra={"route": route, "status": status, "method": method},
                )


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER and _SAFE_REQUEST_ID.match(value):
            return str(value.decode())
    return uuid.uuid4().hex
