"""Webhooks: how fast the dispatcher delivers, and what telling endpoints adds to a ledger
group commit.

    python bench/webhooks.py [--events 5000] [--groups 60] [--database-url URL]

1. Delivery: ``--events`` events queued for one endpoint, a receiver on loopback (uvicorn,
   in its own process) answering 204; the dispatcher's rounds run until every event is
   sent. Signing, the egress check of each connection, HTTP/1.1 keep-alive and the
   store's records of each round are all in the figure.
2. Commit cost: ``--groups`` group commits of 100 ledger completions (delivery's group size)
   through ``complete_sends``, with no endpoint subscribed, then with one endpoint
   subscribed to ``push.sent`` and ``push.failed`` (each completion queues an event), then
   with four. The median commit time of each.

The last line of output is one JSON object:
  events_per_s                  events delivered (2xx) per second by one dispatcher
  commit_ms_no_endpoint         median group commit of 100 completions, nothing subscribed
  commit_ms_one_endpoint        ... one endpoint subscribed (100 outbox rows written)
  commit_ms_four_endpoints      ... four endpoints (400 outbox rows written)
  store                         sqlite or postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import delete  # noqa: E402

from tidings.egress import EgressPolicy  # noqa: E402
from tidings.store.db import Database  # noqa: E402
from tidings.store.ledger import Completion, PlannedSend, complete_sends, open_sends  # noqa: E402
from tidings.store.migrate import upgrade  # noqa: E402
from tidings.store.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint  # noqa: E402
from tidings.store.secrets import SecretBox  # noqa: E402
from tidings.store.types import utcnow  # noqa: E402
from tidings.store.webhooks import WebhookEvent, WebhookEventType, enqueue  # noqa: E402
from tidings.webhooks.dispatcher import Dispatcher, DispatcherOptions  # noqa: E402

RECEIVER = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", access_log=False)
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_port(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the receiver did not start")


def endpoint(n: int, box: SecretBox, url: str, types: list[str]) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=f"wh_{n:016x}",
        url=url,
        event_types=types,
        secret=box.seal("whsec_bench"),
        created_by="admin",
        created_at=utcnow(),
    )


async def delivery(db: Database, box: SecretBox, events: int) -> float:
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        await wait_for_port(port)
        async with db.write() as session:
            session.add(endpoint(1, box, f"http://127.0.0.1:{port}/", ["run.started"]))
        now = utcnow()
        async with db.write() as session:
            for start in range(0, events, 500):
                batch = [
                    WebhookEvent(WebhookEventType.RUN_STARTED, f"run-{n}", None, now, {"n": n})
                    for n in range(start, min(start + 500, events))
                ]
                await enqueue(session, batch, now)
        policy = EgressPolicy(allowed_hosts=frozenset({"127.0.0.1"}))
        dispatcher = Dispatcher(db, box, policy, DispatcherOptions())
        sent = 0
        began = time.perf_counter()
        try:
            while sent < events:
                done = await dispatcher.dispatch_once()
                if done.errors:
                    raise RuntimeError(done.errors[0])
                sent += done.sent
        finally:
            await dispatcher.close()
        return events / (time.perf_counter() - began)
    finally:
        receiver.terminate()
        receiver.wait()
        async with db.write() as session:
            await session.exec(delete(WebhookDelivery))
            await session.exec(delete(WebhookEndpoint))


async def commit_cost(db: Database, box: SecretBox, groups: int, endpoints: int) -> float:
    async with db.write() as session:
        for n in range(endpoints):
            session.add(
                endpoint(100 + n, box, "https://hooks.example/", ["push.sent", "push.failed"])
            )
    times = []
    for group in range(groups):
        now = utcnow()
        key = f"bench-{endpoints}-{group}"
        planned = [
            PlannedSend(f"{key}:{i}", f"{key}-{i}", f"p{i}", i, "apns", 0) for i in range(100)
        ]
        async with db.write() as session:
            rows = await open_sends(
                session,
                run_id=key,
                workflow_id=key,
                journey_id="bench",
                node_id="n",
                app_id="bench",
                expires_at=None,
                planned=planned,
                now=now,
            )
        completions = [
            Completion(row.id, DeliveryStatus.DELIVERED, "200", None) for row in rows.values()
        ]
        began = time.perf_counter()
        async with db.write() as session:
            await complete_sends(session, completions, utcnow())
        times.append((time.perf_counter() - began) * 1000)
    async with db.write() as session:
        await session.exec(delete(WebhookDelivery))
        await session.exec(delete(WebhookEndpoint))
    return statistics.median(times[len(times) // 5 :])  # the first commits warm the caches


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--groups", type=int, default=60)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        url = args.database_url or f"sqlite:///{home}/bench.db"
        upgrade(url)
        db = Database(url)
        box = SecretBox(Fernet.generate_key())
        try:
            events_per_s = await delivery(db, box, args.events)
            costs = [await commit_cost(db, box, args.groups, n) for n in (0, 1, 4)]
        finally:
            await db.dispose()
    result: dict[str, Any] = {
        "events_per_s": round(events_per_s),
        "commit_ms_no_endpoint": round(costs[0], 2),
        "commit_ms_one_endpoint": round(costs[1], 2),
        "commit_ms_four_endpoints": round(costs[2], 2),
        "store": "sqlite" if url.startswith("sqlite") else "postgresql",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
