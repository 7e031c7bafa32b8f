"""Pacing sends to an app's messages-per-second limit, across every worker process.

A sender reserves capacity in chunks (about a quarter second of sends each) from the
store-backed token bucket (tidings.store.ratelimit), waits what the reservation says, then
sends the chunk: one short write per chunk, never one per message.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator

from tidings.observe.metrics import RATE_LIMIT_WAIT_SECONDS, RATE_LIMIT_WAITS
from tidings.store.db import Database
from tidings.store.ratelimit import reserve_sends
from tidings.store.types import utcnow

CHUNK_SECONDS = 0.25
MAX_CHUNK = 500


def chunk_size(rate_per_s: float) -> int:
    return max(1, min(MAX_CHUNK, math.ceil(rate_per_s * CHUNK_SECONDS)))


class SendPacer:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def reserve(self, app_id: str, rate_per_s: float, count: int) -> float:
        """Reserve ``count`` sends; the seconds to wait before making them."""
        async with self._db.write() as session:
            return await reserve_sends(session, app_id, rate_per_s, count, utcnow())

    async def paced(
        self, app_id: str, rate_per_s: float, total: int
    ) -> AsyncGenerator[tuple[int, int]]:
        """Yield ``(start, end)`` ranges of ``total`` sends, each once it may go out."""
        size = chunk_size(rate_per_s)
        for start in range(0, total, size):
            end = min(total, start + size)
            wait = await self.reserve(app_id, rate_per_s, end - start)
            if wait > 0:
                RATE_LIMIT_WAITS.labels(app_id).inc()
                RATE_LIMIT_WAIT_SECONDS.labels(app_id).inc(wait)
                await asyncio.sleep(wait)
            yield start, end
