"""A bare HTTP/2 client for requests aioapns and firebase-admin cannot express.

Duplicate headers, a GET, a missing apns-topic: the simulators must answer those as Apple and
Google do, and only a client that writes raw frames can send them. It also reports what the
real clients hide: SETTINGS, GOAWAY debug data and last-stream-id, RST_STREAM error codes,
response headers, and answers that arrive after a graceful GOAWAY.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.settings import SettingCodes, Settings
from hyperframe.frame import Frame, GoAwayFrame


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _GracefulH2Connection(H2Connection):
    """h2 closes its connection state on a received GOAWAY (python-hyper/h2#1181) and then
    rejects the answers RFC 9113 §6.8 lets streams up to the last-stream-id still receive.
    This client keeps reading them, to see what the server sends."""

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        state = self.state_machine.state
        result = super()._receive_goaway_frame(frame)
        self.state_machine.state = state
        return result


class StreamRefused(Exception):
    """The server reset the stream (``error_code``: 7 is REFUSED_STREAM)."""

    def __init__(self, error_code: int) -> None:
        super().__init__(f"stream reset with error code {error_code}")
        self.error_code = error_code


class NotProcessed(Exception):
    """The stream is above the last-stream-id of the server's GOAWAY."""


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class RawH2Client:
    host: str
    port: int
    ssl_context: ssl.SSLContext
    server_name: str = "api.push.apple.com"
    initial_window: int | None = None
    max_streams_seen: list[int] = field(default_factory=list)
    goaway: ConnectionTerminated | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self) -> None:
        self.ssl_context.set_alpn_protocols(["h2"])
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl_context, server_hostname=self.server_name
        )
        self._conn = _GracefulH2Connection(
            H2Configuration(client_side=True, header_encoding="utf-8")
        )
        if self.initial_window is not None:
            self._conn.local_settings = Settings(
                client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: self.initial_window}
            )
        self._conn.initiate_connection()
        self._writer.write(self._conn.data_to_send())
        self._responses: dict[int, asyncio.Future[RawResponse]] = {}
        self._partial: dict[int, tuple[int, dict[str, str], bytearray]] = {}
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while data := await self._reader.read(65536):
                for event in self._conn.receive_data(data):
                    self._on_event(event)
                self._writer.write(self._conn.data_to_send())
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self.closed.set()
            for future in self._responses.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
                    future.exception()  # a test may leave a stream unanswered on purpose

    def _on_event(self, event: object) -> None:
        if isinstance(event, RemoteSettingsChanged):
            changed = event.changed_settings.get(SettingCodes.MAX_CONCURRENT_STREAMS)
            if changed is not None:
                self.max_streams_seen.append(changed.new_value)
        elif isinstance(event, ResponseReceived):
            assert event.stream_id is not None
            headers = {_text(k): _text(v) for k, v in event.headers or []}
            self._partial[event.stream_id] = (int(headers[":status"]), headers, bytearray())
        elif isinstance(event, DataReceived):
            assert event.stream_id is not None
            self._partial[event.stream_id][2].extend(event.data or b"")
            self._conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
        elif isinstance(event, StreamEnded):
            assert event.stream_id is not None
            status, headers, body = self._partial.pop(event.stream_id)
            response = RawResponse(status, headers, bytes(body))
            self._responses.pop(event.stream_id).set_result(response)
        elif isinstance(event, StreamReset):
            assert event.stream_id is not None
            future = self._responses.pop(event.stream_id, None)
            if future is not None and not future.done():
                future.set_exception(StreamRefused(int(event.error_code or 0)))
        elif isinstance(event, ConnectionTerminated):
            self.goaway = event
            last = event.last_stream_id or 0
            for stream_id in [s for s in self._responses if s > last]:
                future = self._responses.pop(stream_id)
                if not future.done():
                    future.set_exception(NotProcessed(f"stream {stream_id} > {last}"))

    def send(
        self, headers: list[tuple[str, str]], body: bytes = b""
    ) -> tuple[int, asyncio.Future[RawResponse]]:
        """Open a stream and send the request: (stream id, its answer to come)."""
        stream_id = self._conn.get_next_available_stream_id()
        future: asyncio.Future[RawResponse] = asyncio.get_running_loop().create_future()
        self._responses[stream_id] = future
        self._conn.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self._conn.send_data(stream_id, body, end_stream=True)
        self._writer.write(self._conn.data_to_send())
        return stream_id, future

    def cancel(self, stream_id: int) -> None:
        """Reset a stream we opened (RST_STREAM CANCEL), as a client giving up on it does."""
        self._conn.reset_stream(stream_id)
        self._writer.write(self._conn.data_to_send())
        self._responses.pop(stream_id, None)

    async def request(
        self, headers: list[tuple[str, str]], body: bytes = b"", wait_s: float = 5
    ) -> RawResponse:
        _, future = self.send(headers, body)
        return await asyncio.wait_for(future, wait_s)

    async def close(self) -> None:
        self._task.cancel()
        self._writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self._writer.wait_closed()
