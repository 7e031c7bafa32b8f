"""One execution of a delivery batch holds its send fence (tidings.store.fences) while it
runs: it starts over while another live execution holds it, keeps it fresh once taken, and
gives it up however it ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from tidings.store.db import Database
from tidings.store.fences import FENCE_LEASE, AttemptFence, refresh_fence, release_fence
from tidings.store.types import utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")

# how often a waiting execution asks again, at first and at most
FIRST_WAIT_S = 0.2
LONGEST_WAIT_S = 2.0
# the holder refreshes its fence several times within a lease, so a slow store or a busy
# worker never makes a live holder look dead
REFRESH_EVERY_S = FENCE_LEASE.total_seconds() / 6


class FenceHeld(Exception):
    """Another execution of the batch holds its fence and is alive: nothing was sent."""


@asynccontextmanager
async def holding_fence(db: Database, fence: AttemptFence) -> AsyncIterator[None]:
    """Keep this execution's fence fresh while it runs (once it has taken it), and release it
    on the way out, cancelled or failed too: the next attempt must not wait out the lease
    of a holder that has ended."""
    keeper = asyncio.create_task(_keep_fresh(db, fence))
    try:
        yield
    finally:
        keeper.cancel()
        await asyncio.shield(_release(db, fence))


async def once_fence_taken(deliver: Callable[[], Awaitable[T]], fence: AttemptFence) -> T:
    """``deliver()``, again and again while it finds the fence held by a live execution
    (it takes the fence in the transaction that opens the batch's rows)."""
    wait = FIRST_WAIT_S
    while True:
        try:
            return await deliver()
        except FenceHeld:
            if wait == FIRST_WAIT_S:
                # benign: a retry started while the execution before it still sends
                log.info(
                    "attempt %d of batch %s/%s waits: another execution is still sending it",
                    fence.attempt,
                    fence.workflow_run_id,
                    fence.activity_id,
                )
        await asyncio.sleep(wait)
        wait = min(wait * 2, LONGEST_WAIT_S)


async def _keep_fresh(db: Database, fence: AttemptFence) -> None:
    while True:
        await asyncio.sleep(REFRESH_EVERY_S)
        try:
            async with db.write() as session:
                # a no-op until this execution holds the fence, and once it has lost it
                await refresh_fence(session, fence, utcnow())
        except Exception as error:  # a store restarting: the next refresh tries again
            log.warning("could not refresh a send fence: %s", type(error).__name__)


async def _release(db: Database, fence: AttemptFence) -> None:
    try:
        async with db.write() as session:
            await release_fence(session, fence)
    except Exception as error:  # the fence goes stale and the next execution takes it
        log.warning("could not release a send fence: %s", type(error).__name__)
