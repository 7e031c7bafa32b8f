"""Webhooks on the real stack: a worker with the forwarder, the API over ASGI, the store on
SQLite or PostgreSQL, the simulators, and a receiver of our own, a real HTTP server on
loopback (allowed through TIDINGS_CALLBACK_ALLOWED, as ops would allow their own
receivers). The dispatcher is driven round by round by the tests that need to know what one
round did, and runs in the background for the others."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import Client

from tests.engine.conftest import APP, Scene
from tests.harness import app_credentials, make_settings, real_stack, unique_ids
from tidings.egress import EgressPolicy
from tidings.inbound.forwarder import ForwarderOptions, forwarding
from tidings.inbound.triggers import EntryOptions
from tidings.sim import Simulators
from tidings.stack import serving_api
from tidings.webhooks.dispatcher import Dispatcher, DispatcherOptions, dispatching

# retries come back at once: a test waits on what happens, never on the clock
FAST = DispatcherOptions(
    idle_interval=timedelta(milliseconds=50),
    initial_backoff=timedelta(milliseconds=20),
    max_backoff=timedelta(milliseconds=100),
    max_failures=10_000,
)


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


@dataclass
class WebhookScene(Scene):
    dispatcher: Dispatcher | None = None

    async def subscribe(self, url: str, *types: str, **fields: Any) -> dict[str, Any]:
        answer = await self.stack.http.post(
            "/v1/webhooks", json={"url": url, "event_types": list(types)} | fields
        )
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    async def waiting(self, endpoint_id: str) -> dict[str, int]:
        answer = await self.stack.http.get(f"/v1/webhooks/{endpoint_id}")
        assert answer.status_code == 200, answer.text
        counts: dict[str, int] = answer.json()["deliveries"]
        return counts


SceneFactory = Callable[..., AbstractAsyncContextManager[WebhookScene]]


@pytest.fixture
def webhook_scene(
    tmp_path: Path, database_url: str, temporal_client: Client, sims: Simulators
) -> SceneFactory:
    """``async with webhook_scene(background=True, options=...) as s``: the stack with its
    app; the dispatcher runs in the background unless ``background`` is False (then the
    test calls ``s.dispatcher.dispatch_once()``)."""

    @asynccontextmanager
    async def make(
        *, background: bool = True, options: DispatcherOptions = FAST, **overrides: Any
    ) -> AsyncIterator[WebhookScene]:
        overrides.setdefault("callback_allowed", ["127.0.0.1"])
        settings = make_settings(tmp_path, database_url, sims, **overrides)
        team, key, project = unique_ids()
        async with contextlib.AsyncExitStack() as stack_:
            stack = await stack_.enter_async_context(real_stack(settings, temporal_client))
            await stack_.enter_async_context(
                forwarding(
                    temporal_client,
                    stack.db,
                    ForwarderOptions(idle_interval=timedelta(milliseconds=100)),
                    EntryOptions.of(stack.settings),
                )
            )
            policy = EgressPolicy.from_settings(settings)
            if background:
                dispatcher = await stack_.enter_async_context(
                    dispatching(stack.db, stack.resources.secrets, policy, options)
                )
            else:
                dispatcher = Dispatcher(stack.db, stack.resources.secrets, policy, options)
                stack_.push_async_callback(dispatcher.close)
            body = {"id": APP, "name": "Journeys"} | app_credentials(
                sims, team_id=team, key_id=key, project_id=project
            )
            answer = await stack.http.post("/v1/apps", json=body)
            assert answer.status_code == 201, answer.text
            yield WebhookScene(stack, sims, temporal_client, dispatcher)

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
