"""The API for the compatible surface, and a tiny HTTP server that records the callbacks it
receives (on 127.0.0.1, which the API allows explicitly: callbacks to loopback, link-local and
private addresses are refused by default)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Api, serving
from tidings.stack import serving_api
from tidings.store.db import Database
from tidings.temporal.devserver import free_port

CALLBACK_HOST = "127.0.0.1"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class CallbackServer:
    """An ASGI app answering every POST (200, or what ``answer`` says) and keeping what it
    got."""

    received: list[Received] = field(default_factory=list)
    url: str = ""
    answer: tuple[int, list[tuple[bytes, bytes]]] = (200, [])
    delay_s: float = 0.0  # how long it takes to answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.received.append(Received(scope["path"], headers, json.loads(b"".join(chunks))))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status, answer_headers = self.answer
        await send({"type": "http.response.start", "status": status, "headers": answer_headers})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def callback_server() -> AsyncIterator[CallbackServer]:
    server = CallbackServer()
    async with serving_api(server, CALLBACK_HOST, free_port()) as url:
        server.url = url
        yield server


@pytest.fixture
async def api(tmp_path: Path, db: Database) -> AsyncIterator[Api]:
    """The API, allowing callbacks to the test's receiver on 127.0.0.1."""
    async with serving(tmp_path, db, callback_allowed=[CALLBACK_HOST]) as served:
        yield served
