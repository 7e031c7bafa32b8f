"""One HTTP/2 connection: an asyncio protocol driving h2, and the requests in flight on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import httpx
from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import NoAvailableStreamIDError, ProtocolError, TooManyStreamsError
from h2.settings import SettingCodes, Settings

from tidings.push.h2compat import GoawayKeepsStreams

from ._errors import AnswerLost, Unsent, code_name

if TYPE_CHECKING:
    from ._pool import Pool

logger = logging.getLogger(__name__)

# The limit used when a server's SETTINGS do not name MAX_CONCURRENT_STREAMS ("unlimited").
_UNADVERTISED_STREAM_LIMIT = 100
_STREAM_WINDOW = 1 << 20
_CONNECTION_WINDOW = 1 << 24
_DEFAULT_WINDOW = 65_535
_LAST_CLIENT_STREAM_ID = 2**31 - 1

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
Timeouts = dict[str, float | None]


class GracefulH2Connection(GoawayKeepsStreams):
    """h2's connection with two changes the transport needs.

    * A GOAWAY only reports itself (tidings.push.h2compat); the transport stops opening
      streams on the connection and reads the answers still due.
    * h2 counts open streams by walking every stream it holds, on every new stream: with
      hundreds in flight that walk cost more than the rest of a request. The transport counts
      its streams (``in_flight``) and hands back each closed one through :meth:`forget`.
    """

    def __init__(self, config: H2Configuration, in_flight: dict[int, Stream]) -> None:
        super().__init__(config=config)
        self.in_flight = in_flight

    @property
    def open_outbound_streams(self) -> int:
        return len(self.in_flight)

    def forget(self, stream_id: int) -> None:
        """Drop a stream h2 no longer needs (what h2's own stream walk would have done)."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.closed:
            del self.streams[stream_id]
            self._closed_streams[stream_id] = stream.closed_by


class Stream:
    """One request in flight on a connection."""

    __slots__ = (
        "answer",
        "body",
        "end_queued",
        "end_written",
        "headers",
        "id",
        "last_activity",
        "read_timeout",
        "timer",
        "window_waiter",
    )

    def __init__(
        self, stream_id: int, answer: asyncio.Future[Answer], read_timeout: float | None
    ) -> None:
        self.id = stream_id
        self.answer = answer
        self.read_timeout = read_timeout
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.body = bytearray()
        # END_STREAM handed to h2 / handed to the socket: only after the second can the
        # server have seen the whole request.
        self.end_queued = False
        self.end_written = False
        self.last_activity = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.window_waiter: asyncio.Future[None] | None = None


class Connection(asyncio.Protocol):
    """One HTTP/2 connection to the pool's origin."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._loop = pool.loop
        self.streams: dict[int, Stream] = {}
        # Outbound headers come lowercased and free of connection-specific fields from
        # _request_headers, and of inbound ones only :status is read: h2's checks of them
        # (a third of its time per request) would buy nothing here.
        config = H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_outbound_headers=False,
        )
        self._h2 = GracefulH2Connection(config, self.streams)
        self._transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = self._loop.create_future()
        self.reserved = 0  # slots handed to requests that have not opened their stream yet
        self.limit = 0
        self.accepting = False
        self.closed = False
        self.goaway_reason: str | None = None
        self._pending_ends: list[Stream] = []
        self._blocked: set[Stream] = set()
        self._flush_scheduled = False
        self._writable: asyncio.Future[None] | None = None
        self._idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[None] = self._loop.create_future()

    @property
    def free_slots(self) -> int:
        return self.limit - len(self.streams) - self.reserved

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        protocol = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if protocol != "h2":
            self._shut(f"the server did not agree to HTTP/2 (ALPN {protocol!r})", abort=True)
            return
        self._h2.local_settings = Settings(
            client=True,
            initial_values={
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.INITIAL_WINDOW_SIZE: _STREAM_WINDOW,
                SettingCodes.MAX_HEADER_LIST_SIZE: 64 * 1024,
            },
        )
        self._h2.initiate_connection()
        self._h2.increment_flow_control_window(_CONNECTION_WINDOW - _DEFAULT_WINDOW)
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except ProtocolError as error:
            self._flush()  # h2 queued a GOAWAY naming the error
            self._shut(f"HTTP/2 protocol error: {error}", abort=False)
            return
        for event in events:
            kind = type(event)
            if kind is DataReceived:
                self._on_data(event)  # type: ignore[arg-type]
            elif kind is ResponseReceived:
                self._on_response(event)  # type: ignore[arg-type]
            elif kind is StreamEnded:
                self._on_stream_ended(event)  # type: ignore[arg-type]
            elif kind is WindowUpdated:
                self._on_window_updated(event)  # type: ignore[arg-type]
            elif kind is StreamReset:
                self._on_stream_reset(event)  # type: ignore[arg-type]
            elif kind is RemoteSettingsChanged:
                self._on_settings()
            elif kind is ConnectionTerminated:
                self._on_goaway(event)  # type: ignore[arg-type]
        self._flush()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost classifies what was in flight

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, ConnectionResetError):
            reason = "connection reset"
        elif exc is None:
            reason = "connection closed"
        else:
            reason = f"connection lost ({type(exc).__name__}: {exc})"
        if self.goaway_reason is not None:
            reason = f"{self.goaway_reason}, then {reason}"
        self._shut(reason, abort=True)
        if not self.lost.done():
            self.lost.set_result(None)

    # -- requests (run in the caller's task) -----------------------------------------------

    async def exchange(
        self, headers: list[tuple[bytes, bytes]], body: bytes, timeouts: Timeouts
    ) -> Answer:
        """Send one request on a slot reserved by the pool and wait for its answer."""
        if self._writable is not None:
            try:
                await self._until_writable(timeouts.get("write"))
            except BaseException:
                self.reserved -= 1
                self.slot_freed()
                raise
        stream, sent = self._open_stream(headers, body, timeouts.get("read"))
        try:
            if sent < len(body):
                await self._send_rest(stream, body, sent, timeouts.get("write"))
            return await stream.answer
        except asyncio.CancelledError:
            self._reset(stream, None)
            raise

    async def _until_writable(self, write_timeout: float | None) -> None:
        waiter = self._writable
        if waiter is None:
            return
        try:
            async with asyncio.timeout(write_timeout):
                await asyncio.shield(waiter)
        except TimeoutError:
            raise Unsent("write timeout") from None
        if self.closed:
            raise Unsent(self.goaway_reason or "connection closed")

    def _open_stream(
        self, headers: list[tuple[bytes, bytes]], body: bytes, read_timeout: float | None
    ) -> tuple[Stream, int]:
        self.reserved -= 1
        if not self.accepting:
            self.slot_freed()
            raise Unsent(self.goaway_reason or "connection closed")
        h2 = self._h2
        try:
            stream_id = h2.get_next_available_stream_id()
            h2.send_headers(stream_id, headers, end_stream=not body)
        except (TooManyStreamsError, NoAvailableStreamIDError) as error:
            self._stop_accepting()
            self.slot_freed()
            raise Unsent(f"no stream available ({type(error).__name__})") from None
        except ProtocolError as error:
            self.slot_freed()
            raise httpx.LocalProtocolError(f"request not sendable over HTTP/2: {error}") from None
        stream = Stream(stream_id, self._loop.create_future(), read_timeout)
        self.streams[stream_id] = stream
        if stream_id >= _LAST_CLIENT_STREAM_ID - 2:
            self._stop_accepting()  # the next id would not fit: drain and close
        if body:
            sent = self._send_some(stream, body, 0)
        else:
            sent = 0
            stream.end_queued = True
            self._pending_ends.append(stream)
        self._schedule_flush()
        return stream, sent

    def _send_some(self, stream: Stream, body: bytes, offset: int) -> int:
        """Hand h2 as much of the body as flow control allows; the new offset."""
        h2 = self._h2
        total = len(body)
        while offset < total:
            size = min(
                h2.local_flow_control_window(stream.id), h2.max_outbound_frame_size, total - offset
            )
            if size <= 0:
                return offset
            end = offset + size == total
            chunk = body if size == total else body[offset : offset + size]
            h2.send_data(stream.id, chunk, end_stream=end)
            offset += size
        stream.end_queued = True
        self._pending_ends.append(stream)
        return offset

    async def _send_rest(
        self, stream: Stream, body: bytes, offset: int, write_timeout: float | None
    ) -> None:
        """Send what did not fit the flow-control window, as WINDOW_UPDATEs come in."""
        deadline = None if write_timeout is None else self._loop.time() + write_timeout
        while offset < len(body):
            if self.streams.get(stream.id) is not stream:
                return  # answered early, reset or lost: the answer future says which
            waiter: asyncio.Future[None] = self._loop.create_future()
            stream.window_waiter = waiter
            self._blocked.add(stream)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                self._reset(stream, Unsent("write timeout"))
                return
            finally:
                stream.window_waiter = None
                self._blocked.discard(stream)
            if self.streams.get(stream.id) is not stream:
                return
            offset = self._send_some(stream, body, offset)
            self._schedule_flush()

    # -- events ----------------------------------------------------------------------------

    def _on_response(self, event: ResponseReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.headers = event.headers
            if stream.read_timeout is not None:
                stream.last_activity = self._loop.time()

    def _on_data(self, event: DataReceived) -> None:
        stream_id = event.stream_id
        self._h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        stream.body += event.data
        if stream.read_timeout is not None:
            stream.last_activity = self._loop.time()
        limit = self._pool.max_response_bytes
        if len(stream.body) > limit:
            self._reset(stream, AnswerLost(f"answer larger than {limit} bytes"))

    def _on_stream_ended(self, event: StreamEnded) -> None:
        stream = self.streams.pop(event.stream_id, None)
        if stream is None:
            return
        if not stream.end_queued:
            # The server answered before reading the whole request (RFC 9113 §8.1): stop
            # sending it, so the stream closes on both sides.
            with contextlib.suppress(ProtocolError):
                self._h2.reset_stream(stream.id, ErrorCodes.NO_ERROR)
        self._h2.forget(stream.id)
        status = None
        headers: list[tuple[bytes, bytes]] = []
        for name, value in stream.headers or ():
            if name == b":status":
                status = int(value)
            elif not name.startswith(b":"):
                headers.append((name, value))
        if status is None:
            self._settle(stream, AnswerLost("stream ended without a response"))
        else:
            self._settle(stream, None, (status, headers, bytes(stream.body)))
        self.slot_freed()

    def _on_stream_reset(self, event: StreamReset) -> None:
        stream = self.streams.pop(event.stream_id, None)
        if stream is None:
            return
        code = event.error_code
        error: Exception
        if code == ErrorCodes.REFUSED_STREAM:
            error = Unsent("stream refused (REFUSED_STREAM)")
        elif not stream.end_written:
            error = Unsent(f"stream reset {code_name(code)} before the request was sent")
        else:
            error = AnswerLost(f"stream reset {code_name(code)}")
        self._h2.forget(stream.id)
        self._settle(stream, error)
        self.slot_freed()

    def _on_window_updated(self, event: WindowUpdated) -> None:
        if not self._blocked:
            return
        if event.stream_id:
            woken = [s for s in self._blocked if s.id == event.stream_id]
        else:
            woken = list(self._blocked)
        for stream in woken:
            self._wake_sender(stream)

    def _on_settings(self) -> None:
        advertised = self._h2.remote_settings.max_concurrent_streams
        self.limit = advertised if advertised <= 2**31 - 1 else _UNADVERTISED_STREAM_LIMIT
        if not self.ready.done():
            if self.goaway_reason is None:
                self.accepting = True
            self.ready.set_result(None)
        elif self.accepting and self._pool.waiters:
            self._pool.dispatch()

    def _on_goaway(self, event: ConnectionTerminated) -> None:
        last = event.last_stream_id or 0
        reason = f"GOAWAY {code_name(event.error_code)} last_stream_id={last}"
        if self.goaway_reason is None:
            logger.info(
                "%s from %s (%d streams in flight) %r",
                reason,
                self._pool.origin,
                len(self.streams),
                (event.additional_data or b"")[:200],
            )
        self.goaway_reason = reason
        self._stop_accepting()
        for stream_id in [s for s in self.streams if s > last]:
            self._settle(self.streams.pop(stream_id), Unsent(reason))
        self.slot_freed()

    # -- state -----------------------------------------------------------------------------

    def _settle(
        self, stream: Stream, error: BaseException | None, answer: Answer | None = None
    ) -> None:
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None
        self._wake_sender(stream)
        future = stream.answer
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        elif answer is not None:
            future.set_result(answer)

    def _wake_sender(self, stream: Stream) -> None:
        waiter = stream.window_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _reset(self, stream: Stream, error: BaseException | None) -> None:
        """Give up a stream (timeout, caller gone): RST_STREAM(CANCEL) and free its slot."""
        if self.streams.get(stream.id) is not stream:
            return
        del self.streams[stream.id]
        if not self.closed:
            with contextlib.suppress(ProtocolError):
                self._h2.reset_stream(stream.id, ErrorCodes.CANCEL)
            self._h2.forget(stream.id)
            self._schedule_flush()
        self._settle(stream, error)
        self.slot_freed()

    def _read_timer_fired(self, stream: Stream) -> None:
        stream.timer = None
        if self.streams.get(stream.id) is not stream or stream.read_timeout is None:
            return
        left = stream.last_activity + stream.read_timeout - self._loop.time()
        if left > 0:
            stream.timer = self._loop.call_later(left, self._read_timer_fired, stream)
            return
        self._reset(stream, AnswerLost("timeout"))

    def slot_freed(self) -> None:
        """A slot came free (or a reservation was returned)."""
        if self.accepting:
            if self._pool.waiters:
                self._pool.dispatch()
            if not self.streams and not self.reserved:
                self._went_idle()
        elif not self.streams and not self.reserved and not self.closed and self.ready.done():
            self.close()

    def _went_idle(self) -> None:
        expiry = self._pool.keepalive_expiry
        if expiry is None:
            return
        self._idle_since = self._loop.time()
        if self._idle_timer is None:
            self._idle_timer = self._loop.call_later(expiry, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        expiry = self._pool.keepalive_expiry
        if expiry is None or self.streams or self.reserved or not self.accepting:
            return
        left = self._idle_since + expiry - self._loop.time()
        if left > 0:
            self._idle_timer = self._loop.call_later(left, self._idle_check)
            return
        logger.debug("closing an idle connection to %s", self._pool.origin)
        self.close()

    def _stop_accepting(self) -> None:
        if self.accepting:
            self.accepting = False
            self._pool.forget(self)

    def close(self) -> None:
        """Close gracefully: GOAWAY(NO_ERROR), then the socket (its buffer is flushed first)."""
        self._stop_accepting()
        if self.closed:
            return
        with contextlib.suppress(ProtocolError):
            self._h2.close_connection()
        self._flush()
        self._shut("connection closed", abort=False)

    def shut(self, reason: str) -> None:
        """Close now, failing whatever is in flight with ``reason``."""
        if not self.closed:
            with contextlib.suppress(ProtocolError):
                self._h2.close_connection()
            self._flush()
        self._shut(reason, abort=False)

    def _shut(self, reason: str, *, abort: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self._stop_accepting()
        self._pool.everything.discard(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        streams = list(self.streams.values())
        self.streams.clear()
        self._pending_ends.clear()
        for stream in streams:
            self._settle(stream, AnswerLost(reason) if stream.end_written else Unsent(reason))
        self.resume_writing()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
            self.ready.exception()  # retrieved by the pool, or by nobody after a timeout
        transport = self._transport
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()
        if streams or self._pool.waiters:
            self._pool.dispatch()

    def abort(self) -> None:
        self._shut("connection aborted", abort=True)

    def drop_socket(self) -> None:
        """Abort the socket of a connection already shut (its TLS close never completed)."""
        if self._transport is not None:
            self._transport.abort()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        transport = self._transport
        if not data or transport is None or transport.is_closing():
            return
        transport.write(data)
        if self._pending_ends:
            ends, self._pending_ends = self._pending_ends, []
            now = self._loop.time()
            for stream in ends:
                if self.streams.get(stream.id) is not stream:
                    continue
                stream.end_written = True
                if stream.read_timeout is not None:
                    stream.last_activity = now
                    stream.timer = self._loop.call_later(
                        stream.read_timeout, self._read_timer_fired, stream
                    )
