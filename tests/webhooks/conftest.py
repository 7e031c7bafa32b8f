"""Webhooks on the shared scene (tests.scene: a worker with the forwarder, the API over
ASGI, the store on SQLite or PostgreSQL, the simulators), and a receiver of our own, a
real HTTP server on loopback (allowed through TIDINGS_CALLBACK_ALLOWED, as ops would allow
their own receivers). The dispatcher is driven round by round by the tests that need to
know what one round did, and runs in the background for the others."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import Client

from tests.scene import FAST_WEBHOOKS, Scene, SceneFactory, journey_scene
from tidings.sim import Simulators
from tidings.stack import serving_api
from tidings.webhooks.dispatcher import DispatcherOptions


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: keeps every request, answers ``status``."""

    port: int
    status: int = 200
    received: list[Received] = field(default_factory=list)
    refused: int = 0  # requests answered with a non-2xx status

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            if self.status >= 300:
                self.refused += 1
                return Response(status_code=self.status)
            self.received.append(Received(dict(request.headers), body))
            return Response(status_code=self.status)

        return Starlette(routes=[Route("/hooks", hook, methods=["POST"])])

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Receiver]:
        async with serving_api(self.app(), "127.0.0.1", self.port):
            yield self


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(free_port())


@pytest.fixture
def webhook_scene(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> SceneFactory:
    """``async with webhook_scene(background=True, options=...) as s``: the journey scene
    (tests.scene) with the webhook dispatcher; it runs in the background unless
    ``background`` is False (then the test calls ``s.dispatcher.dispatch_once()``)."""

    @asynccontextmanager
    async def make(
        *, background: bool = True, options: DispatcherOptions = FAST_WEBHOOKS, **overrides: Any
    ) -> AsyncIterator[Scene]:
        async with journey_scene(
            tmp_path,
            database_url,
            temporal_client,
            sims,
            webhooks="background" if background else "by hand",
            webhook_options=options,
            **overrides,
        ) as built:
            yield built

    return make


async def eventually(check: Callable[[], Any], what: str, patience: float = 30.0) -> None:
    """Poll until ``check()`` (sync or async) holds; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.05)
