"""HTTP/1.1 for the simulators, parsed by ``h11``: what FCM's endpoint answers besides HTTP/2.

Google serves ``fcm.googleapis.com`` over both; ``requests`` (pyfcm, firebase-admin's
synchronous ``messaging.send()``) speaks only HTTP/1.1. A connection answers one request at a
time, in order (pipelined requests wait their turn, as h11 keeps them). Faults map onto what
HTTP/1.1 can express: it has no GOAWAY and no REFUSED_STREAM, so ``goaway`` and ``refuse``
close the connection without answering (the request is not processed); ``reset`` and
``answer_lost`` abort it as on HTTP/2; ``hang`` never answers, which holds the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from http import HTTPStatus

import h11

from .wire import (
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

MAX_BODY_BYTES = 1 << 20
_MAX_HEADER_BYTES = 64 * 1024


def _reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class Http1ServerConnection(asyncio.Protocol, ServerConnection):
    """One HTTP/1.1 client connection, serving the same handler as HTTP/2."""

    def __init__(self, handler: Handler, on_close: Callable[[ServerConnection], None]) -> None:
        ServerConnection.__init__(self)
        self._handler = handler
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._count = 0
        # The request being answered (or hanging): nothing else is read until it is done.
        self._pending: Reply | None = None
        self._hung = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.server_name = getattr(ssl_object, "sni", None)
            self.peer_cert = ssl_object.getpeercert(binary_form=True)

    def data_received(self, data: bytes) -> None:
        try:
            self._conn.receive_data(data)
        except RuntimeError:
            return  # data after the client's own close: nothing more to read
        self._read_events()

    def eof_received(self) -> bool | None:
        with contextlib.suppress(RuntimeError):  # already closed
            self._conn.receive_data(b"")
        self._read_events()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._drop_pending(DROPPED)
        self._on_close(self)

    # -- for handlers ----------------------------------------------------------------------

    def abort(self, unanswered: str = DROPPED, *, linger: bool = True) -> None:
        # HTTP/1.1 has one request in flight and nothing answered to protect: no lingering
        self._drop_pending(unanswered)
        if self._transport is not None:
            self._transport.abort()

    # -- internals -------------------------------------------------------------------------

    def _read_events(self) -> None:
        while self._pending is None and not self._hung and not self.closed:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request = event
                self._body = bytearray()
            elif isinstance(event, h11.Data):
                self._body.extend(event.data)
                if len(self._body) > MAX_BODY_BYTES:
                    self._reject(413)
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._dispatch()
            elif isinstance(event, h11.ConnectionClosed):
                self._close()
                return

    def _dispatch(self) -> None:
        head = self._request
        assert head is not None
        self._request = None
        self._count += 1
        headers: list[tuple[str, str]] = [
            (":method", head.method.decode("ascii", "replace")),
            (":path", head.target.decode("ascii", "replace")),
        ]
        rest: list[tuple[str, str]] = []
        for name, value in head.headers:
            text = value.decode("latin-1")
            if name == b"host":
                headers.append((":authority", text))
            else:
                rest.append((name.decode("ascii"), text))
        request = Request(self._count, headers + rest, bytes(self._body))
        try:
            reply = self._handler.handle(request, self)
        except Exception:
            logger.exception("simulator handler failed; answering 500")
            reply = Reply(status=500)
        self._body = bytearray()
        if reply.action == "hang":
            # Never answered, so the connection never reads another request.
            self._handler.commit(reply, HANG)
            self._hung = True
            return
        self._pending = reply
        if reply.delay_s > 0:
            asyncio.get_running_loop().call_later(reply.delay_s, self._answer, reply)
        else:
            self._answer(reply)

    def _answer(self, reply: Reply) -> None:
        if self._pending is not reply:
            return  # dropped while its latency ran
        action = reply.action
        if action == "answer_lost":
            self._pending = None
            self._handler.commit(reply, None)
            self.abort()
        elif action == "reset":
            self._pending = None
            self._handler.commit(reply, RESET)
            self.abort(RESET)
        elif action in ("goaway", "refuse"):
            self._pending = None
            self._handler.commit(reply, GOAWAY_REFUSED if action == "goaway" else REFUSED)
            self._close()
        else:
            self._write(reply)

    def _write(self, reply: Reply) -> None:
        headers = [(name, value) for name, value in reply.headers if name != "content-length"]
        headers.append(("content-length", str(len(reply.body))))
        response = h11.Response(
            status_code=reply.status, headers=headers, reason=_reason_phrase(reply.status)
        )
        try:
            data = self._conn.send(response) or b""
            if reply.body:
                data += self._conn.send(h11.Data(data=reply.body)) or b""
            data += self._conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            self._pending = None
            self._handler.commit(reply, DROPPED)
            self._close()
            return
        self._pending = None
        if self._transport is None or self._transport.is_closing():
            self._handler.commit(reply, DROPPED)
            return
        self._transport.write(data)
        self._handler.commit(reply, None)
        if self._conn.our_state is h11.MUST_CLOSE or self._conn.their_state is h11.MUST_CLOSE:
            self._close()
            return
        try:
            self._conn.start_next_cycle()
        except h11.LocalProtocolError:
            self._close()
            return
        self._read_events()  # a pipelined request may be waiting already

    def _reject(self, status: int) -> None:
        """Answer a request the handler never sees (malformed, too large) as Google's front
        end does, with a bare HTML error page, then close."""
        body = f"<html><title>Error {status}</title></html>".encode()
        try:
            data = (
                self._conn.send(
                    h11.Response(
                        status_code=status,
                        headers=[
                            ("content-type", "text/html; charset=UTF-8"),
                            ("content-length", str(len(body))),
                            ("connection", "close"),
                        ],
                        reason=_reason_phrase(status),
                    )
                )
                or b""
            )
            data += self._conn.send(h11.Data(data=body)) or b""
            data += self._conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            data = b""
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
        self._close()

    def _bad_request(self, exc: h11.RemoteProtocolError) -> None:
        logger.debug("HTTP/1.1 protocol error from client: %s", exc)
        self._reject(exc.error_status_hint)

    def _drop_pending(self, unanswered: str) -> None:
        reply, self._pending = self._pending, None
        if reply is not None:
            self._handler.commit(reply, unanswered)

    def _close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()
