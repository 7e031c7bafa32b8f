"""A small asyncio HTTP/2-over-TLS server with the frame-level control fault injection needs.

hypercorn or uvicorn would hide exactly what the simulators must control: the SETTINGS a
connection advertises and when they bind, a graceful GOAWAY with debug data and a chosen
last-stream-id, REFUSED_STREAM, a TCP abort, a stream that is never answered. So this module
drives ``h2`` directly: one ``H2Connection`` per TCP connection, a synchronous handler that
turns a complete request into a :class:`~tidings.sim.wire.Reply` (no task per request: the hot
path stays a function call), answers delayed with ``call_later`` so a slow stream never blocks
the others, and one socket write per batch of events.

A request is processed when its answer is written (see :mod:`tidings.sim.wire`): until then it
waits in ``_pending``, and whatever takes the connection away first (a fault, the client, the
simulator stopping) commits it unanswered.

:class:`H2Server` can also serve HTTP/1.1 on the same port, chosen by ALPN as Google's
front ends do (:mod:`tidings.sim.http1`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from itertools import chain

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
from hyperframe.frame import GoAwayFrame

from .http1 import Http1ServerConnection
from .wire import (
    CANCELLED,
    DROPPED,
    GOAWAY_REFUSED,
    HANG,
    REFUSED,
    RESET,
    Handler,
    Reply,
    Request,
    ServerConnection,
)

logger = logging.getLogger(__name__)

# Streams a client may open before it has acknowledged our SETTINGS. Clients commonly send a
# first flight of requests right after the TLS handshake, before they can have read a lowered
# limit; RFC 9113 §6.5.3 lets a new limit bind only once acknowledged.
_PRE_ACK_STREAMS = 1000
_WINDOW = 1 << 20
_MAX_HEADER_LIST = 64 * 1024
# How long a connection we close keeps reading (and discarding) what the client still sends
# before its socket closes. Closing a TLS connection while the client is still writing turns
# the close into an abort (application data after close_notify), and the TCP reset that
# follows can destroy answers the client has received but not read yet; real servers linger
# for the same reason (nginx's lingering_close).
LINGER_S = 1.0


class H2ServerConnection(asyncio.Protocol, ServerConnection):
    """One HTTP/2 client connection. Handlers read ``server_name``/``peer_cert``, keep ``state``."""

    def __init__(self, handler: Handler, on_close: Callable[[ServerConnection], None]) -> None:
        ServerConnection.__init__(self)
        self._handler = handler
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        self._conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        # Streams still arriving (headers, body so far).
        self._requests: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
        # Complete requests whose answer is not written yet: not processed yet.
        self._pending: dict[int, Reply] = {}
        self._blocked: dict[int, bytes] = {}
        self._highest_answered = 0
        # After our graceful GOAWAY: the highest stream id we still process.
        self._goaway_last: int | None = None
        self._flush_scheduled = False
        self._in_batch = False
        self._lingering: asyncio.TimerHandle | None = None

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
        if self._lingering is not None:
            return  # closing: read and discarded
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
                    self._stream_reset(event.stream_id or 0)
                elif isinstance(event, WindowUpdated):
                    self._send_blocked()
                elif isinstance(event, ConnectionTerminated):
                    self._close()
                    return
        finally:
            self._in_batch = False
        self._flush()
        self._close_if_drained()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lingering is not None:
            self._lingering.cancel()
        self.closed = True
        self._drop_pending(DROPPED)
        self._on_close(self)

    # -- for handlers ----------------------------------------------------------------------

    def advertise_stream_limit(self, limit: int) -> None:
        """Send a new MAX_CONCURRENT_STREAMS; it binds once the client acknowledges it."""
        if not self.closed:
            self._conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: limit})
            self._schedule_flush()

    def abort(self, unanswered: str = DROPPED, *, linger: bool = True) -> None:
        """The connection dies: every request not yet answered is dropped (``unanswered``)
        and nothing more is processed. Answers already written still reach the client, as a
        real server's would once its kernel has them: only what was in flight is lost.
        ``linger``: False when the simulator stops (nothing waits for the client)."""
        self._drop_pending(unanswered)
        self.closed = True
        self._flush()
        if not linger:
            if self._transport is not None:
                self._transport.close()
            return
        self._close()

    # -- internals -------------------------------------------------------------------------

    def _dispatch(self, stream_id: int) -> None:
        pending = self._requests.pop(stream_id, None)
        if pending is None or self.closed:
            return  # (arrived on a connection already dead: never seen by the server)
        if self._goaway_last is not None and stream_id > self._goaway_last:
            # Opened after our GOAWAY said it would not be processed: not even looked at.
            return
        request = Request(stream_id, pending[0], bytes(pending[1]))
        try:
            reply = self._handler.handle(request, self)
        except Exception:
            logger.exception("simulator handler failed; answering 500")
            reply = Reply(status=500)
        if reply.action == "hang":
            self._handler.commit(reply, HANG)
            return
        self._pending[stream_id] = reply
        if reply.delay_s > 0:
            asyncio.get_running_loop().call_later(reply.delay_s, self._answer, stream_id)
        else:
            self._answer(stream_id)

    def _answer(self, stream_id: int) -> None:
        reply = self._pending.pop(stream_id, None)
        if reply is None:
            return  # dropped, refused or cancelled while its latency ran
        action = reply.action
        if action is None or action == "answer_lost":
            if action == "answer_lost":
                # Processed, then the connection dies before the answer leaves.
                self._handler.commit(reply, None)
                self.abort()
                return
            self._write(stream_id, reply)
        elif action == "refuse":
            self._refuse(stream_id)
            self._handler.commit(reply, REFUSED)
        elif action == "reset":
            self._handler.commit(reply, RESET)
            self.abort(RESET)
            return
        elif action == "goaway":
            self._go_away(stream_id, reply)
        self._schedule_flush()
        self._close_if_drained()

    def _write(self, stream_id: int, reply: Reply) -> None:
        headers = [(":status", str(reply.status)), *reply.headers]
        try:
            self._conn.send_headers(stream_id, headers, end_stream=not reply.body)
            if reply.body:
                self._send_body(stream_id, reply.body)
        except ProtocolError:
            # The stream is closed already (the client reset it): nothing was written.
            self._handler.commit(reply, CANCELLED)
            return
        self._handler.commit(reply, None)
        if stream_id > self._highest_answered:
            self._highest_answered = stream_id

    def _refuse(self, stream_id: int) -> None:
        with contextlib.suppress(ProtocolError):  # already closed by the client
            self._conn.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)

    def _go_away(self, trigger: int, reply: Reply) -> None:
        """A graceful GOAWAY: what was received below ``trigger`` is still answered; the
        trigger and everything above the announced last-stream-id is never processed."""
        self._handler.commit(reply, GOAWAY_REFUSED)
        if self._goaway_last is not None:
            # Going away already: a second GOAWAY may not raise the last-stream-id.
            self._refuse(trigger)
            return
        below = [s for s in chain(self._pending, self._requests) if s < trigger]
        # A stream already answered was processed: last-stream-id may never be below it.
        last = max([*below, self._highest_answered], default=0)
        if trigger < last:
            # Answered streams above the trigger: REFUSED_STREAM tells the client it was not
            # processed, though the last-stream-id covers it.
            self._refuse(trigger)
        for stream_id in [s for s in self._pending if s > last]:
            self._handler.commit(self._pending.pop(stream_id), GOAWAY_REFUSED)
        for stream_id in [s for s in self._requests if s > last]:
            del self._requests[stream_id]
        self._goaway_last = last
        self._flush()
        if self._transport is not None and not self._transport.is_closing():
            frame = GoAwayFrame(
                stream_id=0,
                last_stream_id=last,
                error_code=ErrorCodes.NO_ERROR,
                additional_data=reply.goaway_data,
            )
            self._transport.write(frame.serialize())

    def _close_if_drained(self) -> None:
        """After a GOAWAY, close once every stream it still covers has been answered."""
        last = self._goaway_last
        if last is None or self.closed or self._blocked:
            return
        if any(s <= last for s in self._pending) or any(s <= last for s in self._requests):
            return
        self._flush()
        self._close()

    def _stream_reset(self, stream_id: int) -> None:
        self._requests.pop(stream_id, None)
        self._blocked.pop(stream_id, None)
        reply = self._pending.pop(stream_id, None)
        if reply is not None:
            self._handler.commit(reply, CANCELLED)

    def _drop_pending(self, unanswered: str) -> None:
        pending, self._pending = self._pending, {}
        for reply in pending.values():
            self._handler.commit(reply, unanswered)

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
        if self._lingering is not None:
            return  # closing: nothing more leaves
        data = self._conn.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _close(self) -> None:
        """Close after what was written: stop processing, then linger (see LINGER_S)."""
        transport = self._transport
        if transport is None or transport.is_closing() or self._lingering is not None:
            return
        self._flush()
        self._lingering = asyncio.get_running_loop().call_later(LINGER_S, transport.close)


class _AlpnSwitch(asyncio.Protocol):
    """Hands a new TLS connection to the protocol its ALPN chose: h2, else HTTP/1.1."""

    def __init__(self, server: H2Server) -> None:
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        server = self._server
        conn: asyncio.Protocol = (
            server._h2_connection() if chosen == "h2" else server._http1_connection()
        )
        transport.set_protocol(conn)
        conn.connection_made(transport)


class H2Server:
    """Listens on host:port with TLS and serves one :class:`Handler` over HTTP/2 (ALPN h2),
    and with ``http1`` also over HTTP/1.1 (ALPN http/1.1, or no ALPN)."""

    def __init__(
        self, handler: Handler, ssl_context: ssl.SSLContext, *, name: str, http1: bool = False
    ) -> None:
        self._handler = handler
        self._ssl_context = ssl_context
        self._name = name
        self._http1 = http1
        self._server: asyncio.Server | None = None
        self._connections: set[ServerConnection] = set()
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        factory: Callable[[], asyncio.Protocol]
        factory = (lambda: _AlpnSwitch(self)) if self._http1 else self._h2_connection
        self._server = await loop.create_server(
            factory, host, port, ssl=self._ssl_context, backlog=512
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        logger.info("%s simulator listening on %s:%d", self._name, host, self.port)
        return self.port

    def _h2_connection(self) -> H2ServerConnection:
        conn = H2ServerConnection(self._handler, self._connections.discard)
        self._connections.add(conn)
        return conn

    def _http1_connection(self) -> Http1ServerConnection:
        conn = Http1ServerConnection(self._handler, self._connections.discard)
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
            conn.abort(linger=False)
        await self._server.wait_closed()
        self._server = None
