"""The connections to one origin, and the requests waiting for a stream on them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque

from ._connection import Connection, Timeouts
from ._errors import RequestNotProcessed

logger = logging.getLogger(__name__)

# Streams one connection is expected to carry, for deciding when to open another connection
# before a new one's SETTINGS are known (RFC 9113 §6.5.2 recommends allowing at least 100).
# Streams themselves only ever open within the server's advertised limit.
_PLANNED_STREAMS = 100
_CLOSE_WAIT_S = 1.0


class Waiter:
    __slots__ = ("avoid", "connect_timeout", "future")

    def __init__(
        self,
        future: asyncio.Future[Connection],
        avoid: Connection | None,
        connect_timeout: float | None,
    ) -> None:
        self.future = future
        self.avoid = avoid
        self.connect_timeout = connect_timeout


def _pool_timed_out(future: asyncio.Future[Connection]) -> None:
    if not future.done():
        future.set_exception(RequestNotProcessed("pool timeout: no stream came free"))


class Pool:
    """The connections to one origin, and the requests waiting for a stream on them."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        server_hostname: str,
        ssl_context: ssl.SSLContext,
        max_connections: int,
        keepalive_expiry: float | None,
        max_response_bytes: int,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.host = host
        self.port = port
        self.origin = f"{server_hostname}:{port}"
        self.server_hostname = server_hostname
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self.max_response_bytes = max_response_bytes
        self.connections: list[Connection] = []  # ready and accepting new streams
        self.everything: set[Connection] = set()
        self.waiters: deque[Waiter] = deque()
        self.connecting = 0
        self.closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def acquire(self, timeouts: Timeouts, avoid: Connection | None) -> Connection:
        """A connection with a stream slot reserved for the caller."""
        waiters = self.waiters
        while waiters and waiters[0].future.done():
            waiters.popleft()
        if not waiters:
            conn = self._choose(avoid)
            if conn is not None:
                conn.reserved += 1
                return conn
        if self.closed:
            raise RequestNotProcessed("transport closed")
        waiter = Waiter(self.loop.create_future(), avoid, timeouts.get("connect"))
        waiters.append(waiter)
        self._open_if_needed(waiter.connect_timeout)
        pool_timeout = timeouts.get("pool")
        timer = (
            None
            if pool_timeout is None
            else self.loop.call_later(pool_timeout, _pool_timed_out, waiter.future)
        )
        try:
            return await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                conn = future.result()  # a slot was handed over as the caller went away
                conn.reserved -= 1
                conn.slot_freed()
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _choose(self, avoid: Connection | None) -> Connection | None:
        """The first connection with a free slot, not ``avoid`` unless no other can come."""
        fallback = None
        for conn in self.connections:
            if conn.free_slots > 0:
                if conn is not avoid:
                    return conn
                fallback = conn
        if fallback is not None and not self._has_room():
            return fallback
        return None

    def _has_room(self) -> bool:
        return len(self.connections) + self.connecting < self.max_connections

    def dispatch(self) -> None:
        """Hand free slots to waiting requests, oldest first; open connections if needed."""
        self._hand_out()
        if self.waiters:
            self._open_if_needed(self.waiters[0].connect_timeout)

    def _hand_out(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters[0]
            if waiter.future.done():
                waiters.popleft()
                continue
            conn = self._choose(waiter.avoid)
            if conn is None:
                break
            waiters.popleft()
            conn.reserved += 1
            waiter.future.set_result(conn)

    def _open_if_needed(self, connect_timeout: float | None) -> None:
        if self.closed or not self._has_room():
            return
        if len(self.waiters) <= self.connecting * _PLANNED_STREAMS:
            return  # the connections being opened will likely have room for them all
        self.connecting += 1
        task = self.loop.create_task(self._connect(connect_timeout))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, connect_timeout: float | None) -> None:
        conn = Connection(self)
        try:
            async with asyncio.timeout(connect_timeout):
                await self.loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self.ssl_context,
                    server_hostname=self.server_hostname,
                )
                self.everything.add(conn)
                await conn.ready
        except asyncio.CancelledError:
            self.connecting -= 1
            conn.abort()
            raise
        except TimeoutError:
            conn.abort()
            self._connect_failed("connect timeout")
            return
        except Exception as error:  # OSError, ssl.SSLError, the connection's own failure
            conn.abort()
            self._connect_failed(f"connect failed: {error}")
            return
        if not conn.accepting:  # GOAWAY or closed right after its SETTINGS
            conn.close()
            self._connect_failed(f"connect failed: {conn.goaway_reason or 'connection closed'}")
            return
        self.connecting -= 1
        if self.closed:
            conn.shut("transport closed")
            return
        logger.debug("connected to %s (%d streams)", self.origin, conn.limit)
        self.connections.append(conn)
        self.dispatch()
        conn.slot_freed()

    def _connect_failed(self, reason: str) -> None:
        self.connecting -= 1
        logger.debug("connecting to %s: %s", self.origin, reason)
        self._fail_waiters_if_stranded(reason)
        # Requests that wanted another connection than the one that refused them take any
        # now; no new attempt is made until the next request or freed slot asks for one.
        for waiter in self.waiters:
            waiter.avoid = None
        self._hand_out()

    def _fail_waiters_if_stranded(self, reason: str) -> None:
        """Fail the waiting requests when no connection is left that could serve them."""
        if self.connections or self.connecting:
            return
        while self.waiters:
            future = self.waiters.popleft().future
            if not future.done():
                future.set_exception(RequestNotProcessed(reason))

    def forget(self, conn: Connection) -> None:
        """``conn`` takes no more new streams."""
        with contextlib.suppress(ValueError):
            self.connections.remove(conn)
        if self.waiters:
            self.dispatch()

    async def aclose(self) -> None:
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        while self.waiters:
            future = self.waiters.popleft().future
            if not future.done():
                future.set_exception(RequestNotProcessed("transport closed"))
        conns = list(self.everything)
        for conn in conns:
            conn.shut("transport closed")
        if conns:
            # a peer that never completes the TLS close is not waited for long
            await asyncio.wait([conn.lost for conn in conns], timeout=_CLOSE_WAIT_S)
            for conn in conns:
                if not conn.lost.done():
                    conn.drop_socket()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
