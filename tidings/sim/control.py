"""The control API: credentials, scenarios, records and the OAuth2 token endpoint over HTTP.

The app runs under uvicorn on a thread of its own. google-auth fetches FCM access tokens with
a blocking ``requests`` call from inside the caller's event loop; were ``/token`` served on
that same loop (the simulators in-process, as in the tests), the call would wait for a loop it
is blocking. Everything except ``/token`` touches simulator state, which belongs to the
simulators' loop, so those handlers hop onto it (:func:`_on_loop`); ``/token`` only needs the
thread-safe :class:`~tidings.sim.oauth.TokenIssuer`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .base import SimulatorBase
from .scenario import Scenario

if TYPE_CHECKING:
    from .runner import Simulators

logger = logging.getLogger(__name__)
T = TypeVar("T")
ProviderName = Literal["apns", "fcm"]


class ApnsKeyCreate(BaseModel):
    team_id: str = Field(min_length=1)
    key_id: str = Field(min_length=1)
    topics: list[str] = Field(min_length=1)


class ApnsCertificateCreate(BaseModel):
    topics: list[str] = Field(min_length=1)


class ServiceAccountCreate(BaseModel):
    project_id: str = Field(min_length=1)


class Unregister(BaseModel):
    tokens: list[str]
    at_ms: int | None = None


def _simulator(provider: ProviderName, request: Request) -> SimulatorBase:
    sims: Simulators = request.app.state.sims
    return sims.apns if provider == "apns" else sims.fcm


Sim = Annotated[SimulatorBase, Depends(_simulator)]


def create_app(sims: Simulators, loop: asyncio.AbstractEventLoop) -> FastAPI:
    """The control app for ``sims``, whose state lives on ``loop``."""

    async def on_loop(fn: Callable[[], T]) -> T:
        return await _on_loop(loop, fn)

    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.post("/token")
    async def token(request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode()))
        status, body = sims.fcm.issuer.exchange(form)
        return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})

    @router.post("/apns/keys")
    async def create_apns_key(body: ApnsKeyCreate) -> dict[str, str]:
        pem = await on_loop(
            lambda: sims.apns.create_signing_key(body.team_id, body.key_id, body.topics)
        )
        return {"key_pem": pem}

    @router.post("/apns/client-certificates")
    async def create_apns_certificate(body: ApnsCertificateCreate) -> dict[str, str]:
        cert, key = await on_loop(lambda: sims.apns.create_client_certificate(body.topics))
        return {"cert_pem": cert, "key_pem": key}

    @router.post("/fcm/service-accounts")
    async def create_service_account(body: ServiceAccountCreate) -> dict[str, str]:
        return await on_loop(lambda: sims.fcm.create_service_account(body.project_id))

    @router.post("/fcm/expire-access-tokens", status_code=204)
    async def expire_access_tokens(project_id: str | None = None) -> Response:
        await on_loop(lambda: sims.fcm.expire_access_tokens(project_id))
        return Response(status_code=204)

    @router.get("/{provider}/scenario")
    async def get_scenario(sim: Sim) -> Scenario:
        return await on_loop(lambda: sim.scenario)

    @router.put("/{provider}/scenario")
    async def put_scenario(sim: Sim, scenario: Scenario) -> Scenario:
        await on_loop(lambda: sim.set_scenario(scenario))
        return scenario

    @router.post("/{provider}/unregistered", status_code=204)
    async def unregister(sim: Sim, body: Unregister) -> Response:
        await on_loop(lambda: sim.mark_unregistered(body.tokens, body.at_ms))
        return Response(status_code=204)

    @router.get("/{provider}/records")
    async def records(
        sim: Sim,
        tracking_id: str | None = None,
        token: str | None = None,
        accepted_only: bool = False,
    ) -> list[dict[str, Any]]:
        query = sim.accepted if accepted_only else sim.records
        found = await on_loop(lambda: query(tracking_id=tracking_id, token=token))
        return [r.to_dict() for r in found]

    @router.get("/{provider}/displayed")
    async def displayed(sim: Sim, token: str) -> list[dict[str, Any]]:
        found = await on_loop(lambda: sim.displayed(token))
        return [r.to_dict() for r in found]

    @router.get("/{provider}/summary")
    async def summary(sim: Sim) -> dict[str, Any]:
        """Per token ``[requests, accepted, distinct tracking ids, displayed]``, and stats:
        compact enough for a fault suite checking thousands of devices in one call."""

        def build() -> dict[str, Any]:
            tokens = {
                token: [s.requests, s.accepted, s.tracking_ids, s.displayed]
                for token, s in sim.summary().items()
            }
            return {"stats": sim.stats(), "tokens": tokens}

        return await on_loop(build)

    @router.get("/stats")
    async def stats() -> dict[str, Any]:
        return await on_loop(sims.stats)

    @router.post("/reset", status_code=204)
    async def reset() -> Response:
        await on_loop(sims.reset)
        return Response(status_code=204)

    app = FastAPI(title="tidings simulators", docs_url=None, redoc_url=None)
    app.state.sims = sims
    app.include_router(router)
    return app


async def _on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T]) -> T:
    """Run ``fn`` on ``loop`` (the simulators' loop) and wait for it from this loop."""
    if asyncio.get_running_loop() is loop:
        return fn()
    future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    loop.call_soon_threadsafe(run)
    return await asyncio.wrap_future(future)


class ControlServer:
    """uvicorn serving the control app on an already-bound socket, on its own thread."""

    def __init__(self, app: FastAPI, sock: socket.socket) -> None:
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="tidings-sim-control", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    async def start(self) -> None:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the simulators' control server failed to start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        await asyncio.to_thread(self._thread.join, 5)
        self._sock.close()
