"""The worker's own HTTP endpoint: /metrics, /healthz and /readyz on the metrics address."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tidings.observe.health import Readiness

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[Readiness]]


async def metrics_response(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def liveness_response(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


def readiness_endpoint(check: ReadinessCheck) -> Callable[[Request], Awaitable[Response]]:
    async def readyz(_: Request) -> Response:
        verdict = await check()
        body = {"status": "ready" if verdict.ready else "not ready", "checks": verdict.checks}
        return JSONResponse(body, status_code=200 if verdict.ready else 503)

    return readyz


def observe_app(check: ReadinessCheck) -> Starlette:
    return Starlette(
        routes=[
            Route("/metrics", metrics_response),
            Route("/healthz", liveness_response),
            Route("/readyz", readiness_endpoint(check)),
        ]
    )


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"a metrics address is host:port, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@contextlib.asynccontextmanager
async def serving_observe(address: str, check: ReadinessCheck) -> AsyncIterator[int]:
    """Serve /metrics, /healthz and /readyz on ``address`` while the context lasts; yields
    the port (an address ending in :0 takes a free one)."""
    host, port = split_address(address)
    config = uvicorn.Config(
        observe_app(check), host=host, port=port, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task  # raises why it could not start
            raise RuntimeError(f"the metrics endpoint could not listen on {address}")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    log.info("metrics, /healthz and /readyz on http://%s:%d", host, bound)
    try:
        yield int(bound)
    finally:
        server.should_exit = True
        await task
