"""A scripted HTTP/2 server over TLS for the transport's tests: every reaction is the test's.

The simulators answer like a provider; this server lets a test decide, frame by frame, what
each complete request gets: an answer (now or later), RST_STREAM with any code, a GOAWAY with
any last-stream-id while other streams stay open, a TCP abort, or nothing at all. It keeps the
ledger the tests check: which requests it saw complete, and which of those it could have
processed (everything it neither refused nor placed above a GOAWAY's last-stream-id).

h2 shuts its state machine when it *sends* a GOAWAY, which would forbid answering the streams
at or below the last-stream-id; so GOAWAY frames are written here directly, after whatever h2
has queued.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

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

from tidings.sim.tls import CertificateAuthority


@dataclass
class Seen:
    """A complete request (END_STREAM received)."""

    conn: int
    stream_id: int
    request_id: str
    body: bytes
    refused: bool = False


Script = Callable[["ServerConnection", Seen], None]
PerConnection = int | Callable[[int], int]


def answer_at_once(conn: ServerConnection, seen: Seen) -> None:
    conn.answer(seen.stream_id)


class ServerConnection(asyncio.Protocol):
    """One client connection; ``index`` counts connections from 0 in the order they came."""

    def __init__(self, server: ScriptedServer, index: int) -> None:
        self.server = server
        self.index = index
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.transport: asyncio.Transport | None = None
        self.sni: str | None = None
        self.in_flight: dict[int, Seen] = {}
        self.stream_ids: list[int] = []
        self.open_streams: set[int] = set()
        self.max_open = 0
        self.goaway_last: int | None = None
        self.client_goaway = False
        self.lost = asyncio.get_running_loop().create_future()
        self._requests: dict[int, tuple[str, bytearray]] = {}
        self._blocked: dict[int, bytes] = {}

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        self.sni = getattr(ssl_object, "sni", None)
        self.h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: self.server.setting("max_streams", self.index),
                SettingCodes.INITIAL_WINDOW_SIZE: self.server.setting("window", self.index),
            },
        )
        self.h2.initiate_connection()
        self.flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as error:
            self.server.protocol_errors.append(f"connection {self.index}: {error!r}")
            self.flush()
            self.abort()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                request_id = ""
                for name, value in event.headers or ():
                    if name == b"x-request-id":
                        request_id = bytes(value).decode()
                self._requests[event.stream_id] = (request_id, bytearray())
                self.stream_ids.append(event.stream_id)
                self.open_streams.add(event.stream_id)
                self.max_open = max(self.max_open, len(self.open_streams))
            elif isinstance(event, DataReceived):
                pending = self._requests.get(event.stream_id)
                if pending is not None:
                    pending[1].extend(event.data)
                if self.server.setting("ack", self.index):
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self._complete(event.stream_id)
            elif isinstance(event, StreamReset):
                self.server.client_resets.append((self.index, event.stream_id, event.error_code))
                self._requests.pop(event.stream_id, None)
                self.in_flight.pop(event.stream_id, None)
                self.open_streams.discard(event.stream_id)
            elif isinstance(event, WindowUpdated):
                for stream_id, body in list(self._blocked.items()):
                    del self._blocked[stream_id]
                    self._send_body(stream_id, body)
            elif isinstance(event, ConnectionTerminated):
                self.client_goaway = True
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    # -- what a script may do --------------------------------------------------------------

    def answer(
        self,
        stream_id: int,
        *,
        status: int = 200,
        body: bytes | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer a stream, now or after ``delay``: by default its request id as the body; the
        ``x-conn`` header names the connection that answered."""
        if delay > 0:
            asyncio.get_running_loop().call_later(
                delay, lambda: self.answer(stream_id, status=status, body=body)
            )
            return
        seen = self.in_flight.pop(stream_id, None)
        if seen is None or self.transport is None or self.transport.is_closing():
            return
        content = seen.request_id.encode() if body is None else body
        headers = [
            (b":status", str(status).encode()),
            (b"content-length", b"%d" % len(content)),
            (b"x-conn", b"%d" % self.index),
        ]
        self.h2.send_headers(stream_id, headers, end_stream=not content)
        if content:
            self._send_body(stream_id, content)
        else:
            self.open_streams.discard(stream_id)
        self.flush()

    def reset(self, stream_id: int, code: ErrorCodes) -> None:
        seen = self.in_flight.pop(stream_id, None)
        if seen is not None and code == ErrorCodes.REFUSED_STREAM:
            seen.refused = True
        self.open_streams.discard(stream_id)
        self.h2.reset_stream(stream_id, code)
        self.flush()

    def goaway(self, code: ErrorCodes, last_stream_id: int, *, close: bool = False) -> None:
        """Send GOAWAY; streams above ``last_stream_id`` are dropped unprocessed."""
        self.flush()
        frame = GoAwayFrame(0)
        frame.error_code = code
        frame.last_stream_id = last_stream_id
        self.goaway_last = last_stream_id
        for stream_id in [s for s in self.in_flight if s > last_stream_id]:
            del self.in_flight[stream_id]
        assert self.transport is not None
        self.transport.write(frame.serialize())
        if close:
            self.transport.close()

    def set_max_streams(self, limit: int) -> None:
        """Advertise a new MAX_CONCURRENT_STREAMS (binding once the client acknowledges it)."""
        self.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: limit})
        self.flush()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- internals -------------------------------------------------------------------------

    def _complete(self, stream_id: int) -> None:
        pending = self._requests.pop(stream_id, None)
        if pending is None:
            return
        seen = Seen(self.index, stream_id, pending[0], bytes(pending[1]))
        self.server.completed.append(seen)
        if self.goaway_last is not None and stream_id > self.goaway_last:
            return  # above our GOAWAY's last-stream-id: ignored, as RFC 9113 §6.8 says
        self.in_flight[stream_id] = seen
        self.server.script(self, seen)

    def _send_body(self, stream_id: int, body: bytes) -> None:
        while body:
            size = min(
                self.h2.local_flow_control_window(stream_id),
                self.h2.max_outbound_frame_size,
                len(body),
            )
            if size <= 0:
                self._blocked[stream_id] = body
                return
            chunk, body = body[:size], body[size:]
            try:
                self.h2.send_data(stream_id, chunk, end_stream=not body)
            except ProtocolError:
                return  # the client reset the stream meanwhile
        self.open_streams.discard(stream_id)


class ScriptedServer:
    """Serves ``script`` over TLS (ALPN h2) on 127.0.0.1; ``url`` is its origin."""

    def __init__(
        self,
        ca: CertificateAuthority,
        script: Script = answer_at_once,
        *,
        max_streams: PerConnection = 100,
        window: PerConnection = 65_535,
        ack: PerConnection = 1,
    ) -> None:
        self.ca = ca
        self.script = script
        # ack=0: received DATA is never acknowledged, so the client's send window stays shut
        self._settings: dict[str, PerConnection] = {
            "max_streams": max_streams,
            "window": window,
            "ack": ack,
        }
        self.connections: list[ServerConnection] = []
        self.completed: list[Seen] = []
        self.client_resets: list[tuple[int, int, ErrorCodes | int]] = []
        self.protocol_errors: list[str] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    def setting(self, name: str, index: int) -> int:
        value = self._settings[name]
        return value(index) if callable(value) else value

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.ca_file))

    def processed(self) -> list[str]:
        """Request ids the server could have acted on, one entry per time."""
        goaway = {c.index: c.goaway_last for c in self.connections}
        return [
            seen.request_id
            for seen in self.completed
            if not seen.refused
            and (goaway[seen.conn] is None or seen.stream_id <= (goaway[seen.conn] or 0))
        ]

    def open_streams_seen(self) -> int:
        return max((c.max_open for c in self.connections), default=0)

    async def __aenter__(self) -> ScriptedServer:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_connection,
            "127.0.0.1",
            0,
            ssl=self.ca.server_context(request_client_cert=False),
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def _new_connection(self) -> ServerConnection:
        conn = ServerConnection(self, len(self.connections))
        self.connections.append(conn)
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            for conn in self.connections:
                conn.abort()
            await self._server.wait_closed()
