"""A small asyncio HTTP/2-over-TLS server with the frame-level control fault injection needs.

hypercorn or uvicorn would hide exactly what the simulators must control: the SETTINGS a
connection advertises and when they bind, GOAWAY with debug data, a TCP abort, a stream that
is never answered. So this module drives ``h2`` directly: one ``H2Connection`` per TCP
connection, a synchronous handler that turns a complete request into a :class:`Reply` (no task
per request: the hot path stays a function call), answers delayed with ``call_later`` so a slow
stream never blocks the others, and one socket write per batch of events.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

from .scenario import Action

logger = logging.getLogger(__name__)

# Streams a client may open before it has acknowledged our SETTINGS. Clients commonly send a
# first flight of requests right after the TLS handshake, before they can have read a lowered
# limit; RFC 9113 §6.5.3 lets a new limit bind only once acknowledged.
_PRE_ACK_STREAMS = 1000
_WINDOW = 1 << 20
_MAX_HEADER_LIST = 64 * 1024


@dataclass(slots=True)
class Request:
    stream_id: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True)
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    delay_s: float = 0.0
    action: Action | None = None
    goaway_data: bytes = b""


class Handler(Protocol):
    """What a simulator plugs into the server."""

    def initial_stream_limit(self, conn: H2ServerConnection) -> int:
        """MAX_CONCURRENT_STREAMS to advertise when the connection opens."""
        ...

    def handle(self, request: Request, conn: H2ServerConnection) -> Reply: ...


class H2ServerConnection(asyncio.Protocol):
    """One client connection. Handlers read ``server_name``/``peer_cert`` and keep ``state``."""

    def __init__(self, handler: Handler, on_close: Callable[[H2ServerConnection], None]) -> None:
        self._handler = handler
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        self._conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self._requests: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        self._blocked: dict[int, bytes] = {}
        self._flush_scheduled = False
        self._in_batch = False
        self.closed = False
        self.server_name: str | None = None
        self.peer_cert: bytes | None = None
        self.state: Any = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.server_name = getattr(ssl_object, "sni", None)
            self.peer_cert = ssl_object.getpeercert(binary_form=True)
        advertised = self._handler.initial_stream_limit(self)
        values: dict[SettingCodes | int, int] = {
            SettingCodes.MAX_CONCURRENT_STREAMS: advertised,
            SettingCodes.MAX_HEADER_LIST_SIZE: _MAX_HEADER_LIST,
            SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
        }
        self._conn.local_settings = Settings(client=False, initial_values=values)  # type: ignore[arg-type]
        self._conn.initiate_connection()
        if advertised < _PRE_ACK_STREAMS:
            # Sent: `advertised`. Bound until the client acknowledges it: the pre-ACK allowance.
            bound = Settings(
                client=False,
                initial_values={**values, SettingCodes.MAX_CONCURRENT_STREAMS: _PRE_ACK_STREAMS},  # type: ignore[dict-item]
            )
            bound.max_concurrent_streams = advertised
            self._conn.local_settings = bound
        self._conn.increment_flow_control_window(_WINDOW)
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._in_batch = True
        try:
            events = self._conn.receive_data(data)
        except ProtocolError as exc:
            logger.debug("HTTP/2 protocol error from client: %s", exc)
            self._in_batch = False
            self._flush()
            self._close()
            return
        try:
            for event in events:
                if isinstance(event, RequestReceived):
                    assert event.stream_id is not None
                    # header_encoding="utf-8": h2 hands over str pairs.
                    headers: list[tuple[str, str]] = event.headers  # type: ignore[assignment]
                    self._requests[event.stream_id] = (headers, bytearray())
                elif isinstance(event, DataReceived):
                    assert event.stream_id is not None
                    assert event.data is not None
                    pending = self._requests.get(event.stream_id)
                    if pending is not None:
                        pending[1].extend(event.data)
                    self._conn.acknowledge_received_data(
                        event.flow_controlled_length or 0, event.stream_id
                    )
                elif isinstance(event, StreamEnded):
                    assert event.stream_id is not None
                    self._dispatch(event.stream_id)
                elif isinstance(event, StreamReset):
                    self._requests.pop(event.stream_id or 0, None)
                    self._blocked.pop(event.stream_id or 0, None)
                elif isinstance(event, WindowUpdated):
                    self._send_blocked()
                elif isinstance(event, ConnectionTerminated):
                    self._close()
                    return
        finally:
            self._in_batch = False
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._on_close(self)

    # -- for handlers ----------------------------------------------------------------------

    def advertise_stream_limit(self, limit: int) -> None:
        """Send a new MAX_CONCURRENT_STREAMS; it binds once the client acknowledges it."""
        if not self.closed:
            self._conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: limit})
            self._schedule_flush()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- internals -------------------------------------------------------------------------

    def _dispatch(self, stream_id: int) -> None:
        pending = self._requests.pop(stream_id, None)
        if pending is None:
            return
        request = Request(stream_id, pending[0], bytes(pending[1]))
        try:
            reply = self._handler.handle(request, self)
        except Exception:
            logger.exception("simulator handler failed; answering 500")
            reply = Reply(status=500)
        if reply.delay_s > 0:
            loop = asyncio.get_running_loop()
            loop.call_later(reply.delay_s, self._answer, stream_id, reply)
        else:
            self._answer(stream_id, reply)

    def _answer(self, stream_id: int, reply: Reply) -> None:
        if self.closed:
            return
        if reply.action == "hang":
            return
        if reply.action == "reset":
            self.abort()
            return
        if reply.action == "goaway":
            self._conn.close_connection(
                error_code=ErrorCodes.NO_ERROR, additional_data=reply.goaway_data or None
            )
            self._flush()
            self._close()
            return
        headers = [(":status", str(reply.status)), *reply.headers]
        try:
            self._conn.send_headers(stream_id, headers, end_stream=not reply.body)
            if reply.body:
                self._send_body(stream_id, reply.body)
        except ProtocolError:
            # The client reset the stream while the answer was delayed.
            return
        self._schedule_flush()

    def _send_body(self, stream_id: int, body: bytes) -> None:
        while body:
            window = self._conn.local_flow_control_window(stream_id)
            size = min(window, self._conn.max_outbound_frame_size, len(body))
            if size <= 0:
                # The client has not granted flow-control credit: wait for WINDOW_UPDATE.
                self._blocked[stream_id] = body
                return
            chunk, body = body[:size], body[size:]
            self._conn.send_data(stream_id, chunk, end_stream=not body)

    def _send_blocked(self) -> None:
        blocked, self._blocked = self._blocked, {}
        for stream_id, body in blocked.items():
            try:
                self._send_body(stream_id, body)
            except ProtocolError:
                continue

    def _schedule_flush(self) -> None:
        if self._in_batch or self._flush_scheduled:
            return
        self._flush_scheduled = True
        asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self._conn.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class H2Server:
    """Listens on host:port with TLS + ALPN h2 and serves one :class:`Handler`."""

    def __init__(self, handler: Handler, ssl_context: ssl.SSLContext, *, name: str) -> None:
        self._handler = handler
        self._ssl_context = ssl_context
        self._name = name
        self._server: asyncio.Server | None = None
        self._connections: set[H2ServerConnection] = set()
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_connection, host, port, ssl=self._ssl_context, backlog=512
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        logger.info("%s simulator listening on %s:%d", self._name, host, self.port)
        return self.port

    def _new_connection(self) -> H2ServerConnection:
        conn = H2ServerConnection(self._handler, self._connections.discard)
        self._connections.add(conn)
        return conn

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._connections):
            conn.abort()
        await self._server.wait_closed()
        self._server = None
