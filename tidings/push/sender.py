"""What every provider sender takes and gives back."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from tidings.push.message import PushMessage
from tidings.push.outcome import SendResult


@dataclass(frozen=True, slots=True)
class SendItem:
    token: str
    tracking_id: str
    message: PushMessage
    # Absolute deadline; the providers get the time left (apns-expiration, android.ttl).
    expires_at: datetime | None = None


# Told each result as it arrives: the item's index in the batch, and its result. What it
# returns, if anything, is awaited while the request still holds its slot: the caller's way
# to make "in flight" last until the result is recorded.
ResultSink = Callable[[int, SendResult], Awaitable[None] | None]

# A request the provider cannot have processed (never written whole, refused, above a
# GOAWAY's last-stream-id) is resent at once on a fresh connection, this many times, before
# it counts as a transient failure: such a resend cannot duplicate the push.
NOT_PROCESSED_RESENDS = 3


class Sender(Protocol):
    """One provider's client for one app: the seam a new provider plugs into."""

    async def send_batch(
        self, items: Sequence[SendItem], on_result: ResultSink | None = None
    ) -> list[SendResult]:
        """One result per item, in order; never raises for a provider answer. ``on_result``
        hears each result as soon as it is known, so outcomes can be recorded while the
        rest of the batch is still sending."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class ProviderRoutes:
    """Where provider traffic goes: Apple and Google by default, or the simulators."""

    apns_route: tuple[str, int] | None = None
    fcm_endpoint: str | None = None
    ca_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.ca_file is None:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file))

    @classmethod
    def from_strings(
        cls, apns_endpoint: str | None, fcm_endpoint: str | None, ca_file: Path | None
    ) -> ProviderRoutes:
        route = None
        if apns_endpoint:
            host, _, port = apns_endpoint.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"TIDINGS_APNS_ENDPOINT must be host:port, got {apns_endpoint!r}")
            route = (host, int(port))
        return cls(apns_route=route, fcm_endpoint=fcm_endpoint, ca_file=ca_file)


# Sends of triggered entries (a cohort of one; its delivery a local activity) take in-flight
# slots of their own, beside the ones a broadcast's batches share, so a trigger's push never
# queues behind thousands of a broadcast's in the same sender: the delivery activity marks
# them (``urgent_sends``) and each sender picks the lane per request.
URGENT_SENDS: ContextVar[bool] = ContextVar("tidings_urgent_sends", default=False)
# one slot in this many is reserved for urgent sends, at least one
URGENT_SHARE = 16


def urgent_slots(max_in_flight: int) -> int:
    return max(1, max_in_flight // URGENT_SHARE)


@contextmanager
def urgent_sends() -> Iterator[None]:
    """The sends made in this context (and the tasks it starts) take the urgent lane."""
    token = URGENT_SENDS.set(True)
    try:
        yield
    finally:
        URGENT_SENDS.reset(token)


# Set by a delivery that is being cancelled: its requests not yet sent are not sent (each is
# told RETRY_LATER, so the next attempt sends it), while those in flight are answered.
SENDS_HALTED: ContextVar[asyncio.Event | None] = ContextVar("tidings_sends_halted", default=None)
NOT_SENT_HALTED = "not sent: its attempt was stopping"


def sends_halted() -> bool:
    halted = SENDS_HALTED.get()
    return halted is not None and halted.is_set()


class InFlightLimit:
    """At most ``limit`` requests in flight, taken a batch at a time (a semaphore with
    weights): concurrent batches of one sender share the bound, and a small batch never waits
    behind a whole chunk's worth of capacity it does not need."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, count: int) -> AsyncIterator[None]:
        count = min(count, self.limit)
        async with self._changed:
            await self._changed.wait_for(lambda: self._used + count <= self.limit)
            self._used += count
        try:
            yield
        finally:
            async with self._changed:
                self._used -= count
                self._changed.notify_all()


def seconds_left(expires_at: datetime | None, now: datetime) -> int | None:
    if expires_at is None:
        return None
    return max(0, int((expires_at - now).total_seconds()))
