"""Throughput of H2Transport against httpx's own HTTP/2 transport (not a test; run by hand).

    python bench/h2transport.py [--messages N] [--rounds R] [--concurrent-batches B]

The FCM simulator runs in its own process (so its CPU is not the client's). Each round sends
the same messages through firebase-admin's ``send_each_async`` (batches of 500, several at
once, as tidings' delivery does) and through a bare ``httpx.AsyncClient.post``, once with
each transport, alternating, and reports messages per second and client CPU per message.
Figures vary with the machine: compare the two columns of one run, never across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from statistics import median

import firebase_admin
import httpx
from firebase_admin import credentials, messaging

from tidings.push.adapters import OAuthFlow, close_fcm_app, configure_fcm_app
from tidings.push.h2transport import H2Transport
from tidings.sim import SimulatorClient, read_endpoints

BATCH = 500
MAX_CONNECTIONS = 4


def fcm_app(account: dict[str, str], endpoint: str, ca_file: str, h2: bool) -> firebase_admin.App:
    app = firebase_admin.initialize_app(credentials.Certificate(account), name=str(uuid.uuid4()))
    context = ssl.create_default_context(cafile=ca_file)
    configure_fcm_app(
        app, endpoint=endpoint, ssl_context=context, max_connections=MAX_CONNECTIONS, timeout_s=30
    )
    if not h2:  # configure_fcm_app installs H2Transport; the baseline is httpx's own
        service = messaging._get_messaging_service(app)
        wrapper = service._async_client
        wrapper._async_client = httpx.AsyncClient(
            http2=True,
            timeout=30,
            headers=wrapper._headers,
            auth=OAuthFlow(service._credential),
            transport=httpx.AsyncHTTPTransport(
                http2=True,
                retries=0,
                verify=context,
                limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
            ),
        )
    return app


async def via_firebase_admin(app: firebase_admin.App, messages: int, concurrent: int) -> None:
    batches = [
        [
            messaging.Message(token=f"bench-{n}:APA91b" + "x" * 40, data={"trackingId": f"t{n}"})
            for n in range(start, min(start + BATCH, messages))
        ]
        for start in range(0, messages, BATCH)
    ]
    gate = asyncio.Semaphore(concurrent)

    async def one(batch: list[messaging.Message]) -> None:
        async with gate:
            result = await messaging.send_each_async(batch, app=app)
            assert result.success_count == len(batch), result.responses[0].exception

    await asyncio.gather(*(one(b) for b in batches))


async def via_httpx(client: httpx.AsyncClient, url: str, messages: int, concurrent: int) -> None:
    body = {"message": {"token": "bench:APA91b" + "x" * 40, "data": {"trackingId": "t"}}}
    gate = asyncio.Semaphore(BATCH * concurrent)

    async def one() -> None:
        async with gate:
            response = await client.post(url, json=body)
            assert response.status_code in (200, 401), response.status_code

    await asyncio.gather(*(one() for _ in range(messages)))


async def measure(run: Callable[[], Awaitable[None]], messages: int) -> tuple[float, float]:
    """Messages per second, client CPU microseconds per message."""
    wall, cpu = time.perf_counter(), time.process_time()
    await run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return messages / wall, cpu / messages * 1e6


async def main(messages: int, rounds: int, concurrent: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        sim = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "tidings.sim", "--home", home, "--no-record-payloads"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not (Path(home) / "sim" / "endpoints.json").exists():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            endpoints = read_endpoints(Path(home))
            async with SimulatorClient(endpoints["control_url"]) as sims:
                account = await sims.create_fcm_service_account("bench")
            await compare(endpoints, account, messages, rounds, concurrent)
        finally:
            sim.terminate()
            await sim.wait()


async def compare(
    endpoints: dict[str, str],
    account: dict[str, str],
    messages: int,
    rounds: int,
    concurrent: int,
) -> None:
    endpoint, ca_file = endpoints["fcm_endpoint"], endpoints["ca_file"]
    apps = {
        "httpx": fcm_app(account, endpoint, ca_file, h2=False),
        "H2Transport": fcm_app(account, endpoint, ca_file, h2=True),
    }
    context = ssl.create_default_context(cafile=ca_file)
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS)
    clients = {
        "httpx": httpx.AsyncClient(http2=True, verify=context, limits=limits, timeout=30),
        "H2Transport": httpx.AsyncClient(
            transport=H2Transport(ssl_context=context, max_connections=MAX_CONNECTIONS),
            timeout=30,
        ),
    }
    url = f"{endpoint}/v1/projects/bench/messages:send"
    results: dict[str, dict[str, list[tuple[float, float]]]] = {
        "firebase_admin": {name: [] for name in apps},
        "bare_httpx_post": {name: [] for name in apps},
    }
    try:
        for name in apps:  # warm up: connections, OAuth2 token
            await via_firebase_admin(apps[name], BATCH, concurrent)
            await via_httpx(clients[name], url, BATCH, concurrent)
        for _ in range(rounds):
            for name in apps:
                app, client = apps[name], clients[name]
                results["firebase_admin"][name].append(
                    await measure(partial(via_firebase_admin, app, messages, concurrent), messages)
                )
                results["bare_httpx_post"][name].append(
                    await measure(partial(via_httpx, client, url, messages, concurrent), messages)
                )
    finally:
        for app in apps.values():
            await close_fcm_app(app)
        for client in clients.values():
            await client.aclose()
    summary = {
        path: {
            name: {
                "messages_per_s": round(median(r[0] for r in runs), 1),
                "client_cpu_us_per_message": round(median(r[1] for r in runs), 1),
            }
            for name, runs in by_transport.items()
        }
        for path, by_transport in results.items()
    }
    run = {"messages": messages, "rounds": rounds, "concurrent_batches": concurrent}
    print(json.dumps({**run, **summary}, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrent-batches",
        type=int,
        default=4,
        help="send_each_async batches of 500 in flight at once (bare posts: 500 per batch)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.rounds, args.concurrent_batches))
