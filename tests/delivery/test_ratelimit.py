"""The per-app send rate limit: a token bucket in the store, shared by every worker process."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from activities.delivery.pacing import SendPacer, chunk_size
from tests.scene import Scene, apns_token, fcm_token
from tidings.push.message import PushMessage
from tidings.push.sender import SendItem
from tidings.store.db import Database
from tidings.store.models import App
from tidings.store.ratelimit import reserve_sends

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


async def _app(db: Database, app_id: str, rate: float) -> None:
    async with db.write() as session:
        session.add(App(id=app_id, name=app_id, send_rate_per_s=rate))


async def reserve(db: Database, count: int, at: datetime, rate: float = 10) -> float:
    async with db.write() as session:
        return await reserve_sends(session, "limited", rate, count, at)


async def test_the_bucket_is_shared_by_every_process(database_url: str) -> None:
    """Two engines stand for two worker processes: capacity one of them took is gone for
    the other, and capacity comes back at the rate."""
    first, second = Database(database_url), Database(database_url)
    try:
        await _app(first, "limited", 10)
        assert await reserve(first, 10, T0) == 0  # a second's worth at once
        assert await reserve(second, 5, T0) == pytest.approx(0.5)  # then at 10/s
        assert await reserve(first, 5, T0 + timedelta(seconds=0.1)) == pytest.approx(0.9)
        # a clock behind the last refill adds nothing
        assert await reserve(second, 1, T0) == pytest.approx(1.0)
        # once the debt is waited off, the bucket refills up to one second's worth only
        assert await reserve(first, 10, T0 + timedelta(seconds=60)) == 0
        assert await reserve(second, 1, T0 + timedelta(seconds=60)) == pytest.approx(0.1)
    finally:
        await first.dispose()
        await second.dispose()


async def test_concurrent_reservations_never_share_capacity(database_url: str) -> None:
    engines = [Database(database_url), Database(database_url)]
    try:
        await _app(engines[0], "limited", 10)
        waits = await asyncio.gather(*(reserve(engines[n % 2], 5, T0) for n in range(40)))
    finally:
        for engine in engines:
            await engine.dispose()
    # whatever the interleaving, the k-th chunk of 5 waits (5k - 10) / 10 seconds
    expected = [max(0.0, (5 * k - 10) / 10) for k in range(1, 41)]
    assert sorted(round(w, 6) for w in waits) == expected


def test_senders_reserve_in_chunks() -> None:
    assert chunk_size(1) == 1
    assert chunk_size(10) == 3
    assert chunk_size(1000) == 250
    assert chunk_size(1_000_000) == 500


async def test_a_limited_app_sends_no_faster_than_its_rate(scene: Scene) -> None:
    """25 devices at 10 messages/s (a bucket of 10): the last push cannot leave before 1.5 s
    after the first (a lower bound; a loaded machine is only slower)."""
    credentials = scene.credentials()
    app = await scene.add_app(credentials=credentials, send_rate_per_s=10)
    read = await scene.stack.http.get(f"/v1/apps/{app}")
    assert read.json()["send_rate_per_s"] == 10
    profiles = [f"p{n}" for n in range(25)]
    for n, profile in enumerate(profiles):
        provider, token = ("apns", apns_token(n)) if n % 2 else ("fcm", fcm_token(n))
        await scene.add_device(app, profile, provider, token, attributes={"first_name": "A"})
    # connections open first, so the first push is not slowed by a TLS handshake
    senders = await scene.senders(app)
    assert senders.apns is not None
    assert senders.fcm is not None
    warm = PushMessage(title="warm")
    await senders.apns.send(SendItem(apns_token(999), "warm-up", warm))
    await senders.fcm.send(SendItem(fcm_token(999), "warm-up", warm))
    scene.sims.reset()
    _, result = await scene.run_push(app, profiles)
    assert result.counts["push.delivered"] == 25
    records = [*scene.sims.apns.records(), *scene.sims.fcm.records()]
    arrivals = sorted(r.received_at for r in records)
    assert arrivals[-1] - arrivals[0] >= 1.5 - 0.1

    # lifting the limit: the API takes null
    patch = await scene.stack.http.patch(f"/v1/apps/{app}", json={"send_rate_per_s": None})
    assert patch.status_code == 200
    assert patch.json()["send_rate_per_s"] is None
    assert (await scene.app(app)).send_rate_per_s is None


async def test_the_pacer_yields_chunks_as_the_bucket_allows(database_url: str) -> None:
    db = Database(database_url)
    try:
        await _app(db, "limited", 40)
        pacer = SendPacer(db)
        ranges = [r async for r in pacer.paced("limited", 40, 95)]
    finally:
        await db.dispose()
    assert ranges[0] == (0, 10)
    assert ranges[-1][1] == 95
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
