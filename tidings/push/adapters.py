"""The one place where tidings configures aioapns and firebase-admin beyond their public options.

Both libraries hard-code their provider hosts and neither lets a caller choose the TLS trust
store of every connection, and each does something tidings must not do at scale:

* aioapns mishandles a rise of the server's SETTINGS_MAX_CONCURRENT_STREAMS: Apple allows one
  stream until a connection has sent a valid JWT (and after a rejected push), then raises the
  limit to about 1000, but aioapns' semaphore caps the released slots at the *old* bound, so a
  connection stays at one stream in flight. ``StreamSlots`` keeps the count right.
* aioapns mints a new provider JWT for every connection it opens (Apple answers
  ``TooManyProviderTokenUpdates`` when a team refreshes more often than every 20 minutes), has no
  way to re-mint after ``ExpiredProviderToken``, and its proxy mode cannot work on Python 3.9+
  (it hands an ``asyncio.TransportSocket`` to ``create_connection``).
* aioapns keeps no response headers (Retry-After) and no unreadable error body, forgets the
  reason a GOAWAY frame carries, and leaves a request abandoned on timeout holding its stream
  (and its future, which a later connection loss then fails with InvalidStateError).
* aioapns cannot say whether a failed request reached Apple: it closes a connection at once
  on GOAWAY (losing the answers a graceful server still sends to the streams at or below its
  last-stream-id), ignores RST_STREAM (a refused request waits for its timeout), and its pool
  stops opening connections once it has had its maximum. tidings' send path classes every
  failure as never processed (resent at once: it cannot duplicate) or answer lost (the push
  may have been delivered: an unknown outcome, resent later with the same apns-id).
* firebase-admin retries POSTs on 500/503 inside its HTTP client, under Temporal's retries, and
  on every 401 refreshes its OAuth2 token twice, synchronously, on the event loop: a batch
  answered THIRD_PARTY_AUTH_ERROR (a 401 that no token refresh can fix) would cost three
  requests and two blocking token fetches per message.

So this module subclasses aioapns' connection pools (one shared JWT provider per signing key,
an optional host:port route that keeps Apple's host name for SNI and certificate checks) and
rebuilds firebase-admin's async HTTP client on tidings' own HTTP/2 transport
(tidings.push.h2transport: no SDK retries, and every failure known as never processed or
answer lost, which httpcore cannot tell apart), with our TLS trust, optionally
another base URL, and an OAuth2 flow that refreshes at most once per 401, off the event loop,
shared by every request that saw the same stale token, and never for THIRD_PARTY_AUTH_ERROR.
Everything else (HTTP/2 framing, stream accounting, FCM message encoding, error parsing,
OAuth2 through the service account's ``token_uri``) stays the libraries' own.

tests/push/test_adapters.py fails loudly if an upgrade of either library moves what this
module relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from functools import partial
from typing import Any

import firebase_admin
import httpx
import jwt
from aioapns.common import APNS_RESPONSE_CODE, NotificationRequest, NotificationResult
from aioapns.connection import (
    APNsBaseClientProtocol,
    APNsCertConnectionPool,
    APNsDevelopmentClientProtocol,
    APNsKeyConnectionPool,
    APNsProductionClientProtocol,
    AuthorizationHeaderProvider,
    ChannelPool,
)
from aioapns.exceptions import ConnectionClosed
from firebase_admin import App, messaging
from google.auth import credentials as google_credentials
from google.auth.transport import requests as google_auth_requests
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.exceptions import H2Error, NoAvailableStreamIDError

from tidings.push.h2compat import GoawayKeepsStreams
from tidings.push.h2transport import H2Transport

# Apple: refresh no more often than every 20 minutes and at least every 60 minutes.
APNS_JWT_LIFETIME_S = 40 * 60
APNS_JWT_MIN_REFRESH_S = 20 * 60


class SharedProviderToken(AuthorizationHeaderProvider):
    """One APNs provider JWT per signing key, shared by every connection of a client.

    Tokens are issued at ``iat`` values aligned to a fixed grid (every 40 minutes since the
    epoch), so every worker process of a deployment presents a token of the same age and a
    fleet of workers, or a restart, never looks to Apple like a burst of token updates
    (TooManyProviderTokenUpdates). A token is replaced when its grid slot ends, before
    Apple's one-hour limit.

    ``generation`` counts the tokens minted. A sender notes it before a request; after an
    ``ExpiredProviderToken`` answer it calls ``renew(seen_generation)``, which mints a token
    dated now unless another request already did, so a batch of rejected requests mints
    exactly one new JWT.
    """

    def __init__(self, key: str, key_id: str, team_id: str) -> None:
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._lock = threading.Lock()
        self._header: str | None = None
        self._valid_until = 0.0
        self._issued_at = -APNS_JWT_MIN_REFRESH_S
        self.generation = 0
        # tokens minted in answer to ExpiredProviderToken (not on the regular schedule)
        self.renewals = 0

    def get_header(self) -> str:
        with self._lock:
            now = time.time()
            if self._header is None or now >= self._valid_until:
                slot = int(now // APNS_JWT_LIFETIME_S) * APNS_JWT_LIFETIME_S
                # after a renewal off the grid, never look like an update within 20 minutes
                self._mint(issued_at=max(slot, self._issued_at + APNS_JWT_MIN_REFRESH_S))
            assert self._header is not None
            return self._header

    def renew(self, seen_generation: int) -> bool:
        """Mint a new JWT unless one was minted since ``seen_generation``; True if minted."""
        with self._lock:
            if self.generation != seen_generation:
                return False
            self._mint(issued_at=int(time.time()))
            self.renewals += 1
            return True

    def _mint(self, issued_at: int) -> None:
        token = jwt.encode(
            {"iss": self._team_id, "iat": issued_at},
            self._key,
            algorithm="ES256",
            headers={"kid": self._key_id},
        )
        self._header = f"bearer {token}"
        self._issued_at = issued_at
        self._valid_until = issued_at + APNS_JWT_LIFETIME_S
        self.generation += 1


class StreamSlots(ChannelPool):
    """aioapns' stream semaphore with a correct ``bound`` setter: the streams in flight stay
    counted when the server lowers or raises its concurrent-stream limit."""

    def _set_bound(self, new_bound: int) -> None:
        in_flight = self._bound_value - self._value
        self._bound_value = new_bound
        self._value = new_bound - in_flight
        waiting = len(self._waiters) if self._waiters else 0
        for _ in range(max(0, min(self._value, waiting))):
            self._wake_up_next()

    bound = property(ChannelPool.bound.fget, _set_bound)  # type: ignore[attr-defined]


# A new connection opens one stream until the server's SETTINGS say more: Apple allows a
# single stream until a valid provider token has been seen, and streams opened beyond the
# limit are refused (or the connection is closed with "Maximum active streams violated").
INITIAL_STREAMS = 1


@dataclass
class AnswerExtras:
    """What an APNs answer carried beyond aioapns' NotificationResult."""

    retry_after_s: float | None = None
    raw_body: str | None = None


class NotProcessed(ConnectionClosed):
    """APNs cannot have processed the request: it was never written whole, its stream was
    refused (REFUSED_STREAM), or it is above a GOAWAY's last-stream-id. Resending it cannot
    duplicate the push. A ConnectionClosed, so aioapns' own pool loop retries it too."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AnswerLost(ConnectionClosed):
    """The request was written whole and no answer came (a reset, a lost connection, a
    timeout): APNs may have delivered it. Resending it may duplicate the push, which the
    collapse id then hides on the device."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _ProtocolFixes(APNsBaseClientProtocol):
    """What tidings changes in aioapns' connection protocol.

    * Its own send path (``send_within``), which knows whether a request was written whole,
      so every failure is either :class:`NotProcessed` or :class:`AnswerLost`, and a deadline
      covers the wait for a stream as well as the answer.
    * HTTP/2 used as specified: a GOAWAY fails the streams above its last-stream-id as
      never processed, lets the streams at or below it finish, and opens no new stream on
      the connection (aioapns closes the connection at once, losing the answers a graceful
      server was still going to send); a RST_STREAM fails its request (REFUSED_STREAM as
      never processed), where aioapns ignores it and the request waits for its timeout.
    * ``StreamSlots`` instead of aioapns' semaphore (see above).
    * HTTP/2 flow control: aioapns never gives back the window of response bodies it reads,
      so after ~64 KiB of error bodies (about 1,200 answers of 410) a connection stalls.
    * Whole bodies: aioapns parses every DATA frame as a complete JSON document and leaves an
      error answer with an empty or non-JSON body (an empty 500, an HTML 502) unresolved, or
      breaks the connection on it. Bodies are buffered per stream and handed over once the
      stream ends; an unreadable one becomes a reason that says so, classified as unknown,
      and its raw text goes to ``answer_extras`` for the sender's log.
    * Retry-After of an answer goes to ``answer_extras`` (keyed by apns-id).
    * A request abandoned by its caller (a timeout) resets its stream and frees its slot.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # answers still due after a graceful GOAWAY are read, not dropped (h2compat)
        self.conn = GoawayKeepsStreams()
        self.free_channels = StreamSlots(INITIAL_STREAMS)
        self._bodies: dict[int, bytearray] = {}
        self.answer_extras: dict[str, AnswerExtras] = {}
        # set by a GOAWAY (or when stream ids run out): no new stream opens here; the
        # streams already open may finish, then the connection closes
        self.retiring = False
        self.lost = False

    @property
    def is_busy(self) -> bool:
        """No new request may use this connection: it is full, or closing (a GOAWAY, a
        reset whose connection_lost has not come yet): the pool opens another instead."""
        return self._closing or self.free_channels.is_busy

    async def send_notification(self, request: NotificationRequest) -> NotificationResult:
        return await self.send_within(request, None)

    async def send_within(
        self, request: NotificationRequest, deadline: float | None
    ) -> NotificationResult:
        """Send one request; answer, or raise NotProcessed / AnswerLost by the deadline
        (the event loop's clock; None: no deadline)."""
        notification_id = request.notification_id
        written = False
        try:
            async with asyncio.timeout_at(deadline):
                stream_id = await self._open_stream()
                future = self._write(request, stream_id)
                written = True
                return await future
        except TimeoutError:
            self._abandon(notification_id)
            if written:
                raise AnswerLost("no answer in time") from None
            raise NotProcessed("no stream free in time") from None
        except asyncio.CancelledError:
            self._abandon(notification_id)
            raise

    async def _open_stream(self) -> int:
        if self._closing:
            raise NotProcessed("the connection is closing")
        try:
            stream_id: int = await self.free_channels.acquire()
        except ConnectionClosed:
            raise NotProcessed("the connection closed before a stream was free") from None
        except NoAvailableStreamIDError:
            self.retiring = True
            self._close_when_drained()
            raise NotProcessed("the connection used all its stream ids") from None
        if self._closing:
            self.free_channels.release()
            raise NotProcessed("the connection is closing")
        return stream_id

    @property
    def _closing(self) -> bool:
        transport = self.transport
        return self.retiring or self.lost or transport is None or transport.is_closing()

    def _write(
        self, request: NotificationRequest, stream_id: int
    ) -> asyncio.Future[NotificationResult]:
        """Write the request's frames (both or neither reach h2) and register its answer."""
        headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":path", f"/3/device/{request.device_token}"),
            ("host", self.APNS_SERVER),
            ("apns-id", request.notification_id),
            ("apns-topic", request.apns_topic or self.apns_topic),
        ]
        if request.time_to_live is not None:
            headers.append(("apns-expiration", str(int(time.time()) + request.time_to_live)))
        if request.priority is not None:
            headers.append(("apns-priority", str(request.priority)))
        if request.collapse_key is not None:
            headers.append(("apns-collapse-id", request.collapse_key))
        if request.push_type is not None:
            headers.append(("apns-push-type", request.push_type.value))
        if self.auth_provider:
            headers.append(("authorization", self.auth_provider.get_header()))
        body = json.dumps(request.message, ensure_ascii=False).encode()
        try:
            self.conn.send_headers(stream_id=stream_id, headers=headers)
            self.conn.send_data(stream_id=stream_id, data=body, end_stream=True)
        except H2Error as error:
            # nothing of this request has left (h2 only buffers until flush): reset what
            # h2 opened and give the slot back
            with contextlib.suppress(H2Error):
                self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
            self.free_channels.release()
            raise NotProcessed(f"not written ({type(error).__name__})") from None
        future: asyncio.Future[NotificationResult] = self.loop.create_future()
        self.requests[request.notification_id] = future
        self.request_streams[stream_id] = request.notification_id
        self.flush()
        return future

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            super().flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except H2Error as error:
            self._fail_all(AnswerLost(f"HTTP/2 protocol error ({type(error).__name__})"))
            self.close()
            return
        for event in events:
            if isinstance(event, ResponseReceived):
                self.on_response_received(dict(event.headers))
            elif isinstance(event, DataReceived):
                self.on_data_received(event.data or b"", event.stream_id or 0)
            elif isinstance(event, StreamEnded):
                self.on_stream_ended(event.stream_id or 0)
            elif isinstance(event, StreamReset):
                self._stream_reset(event)
            elif isinstance(event, RemoteSettingsChanged):
                self.on_remote_settings_changed(event.changed_settings)  # type: ignore[arg-type]
            elif isinstance(event, ConnectionTerminated):
                self.on_connection_terminated(event)
        self.flush()

    def _abandon(self, notification_id: str) -> None:
        future = self.requests.pop(notification_id, None)
        if future is None:
            return  # cancelled before its stream opened, or already answered
        self.request_statuses.pop(notification_id, None)
        for stream_id, owner in list(self.request_streams.items()):
            if owner == notification_id:
                del self.request_streams[stream_id]
                self._bodies.pop(stream_id, None)
                with contextlib.suppress(Exception):
                    self.conn.reset_stream(stream_id, ErrorCodes.CANCEL)
                    self.flush()
                self.free_channels.release()
        self._close_when_drained()

    def _fail_stream(self, stream_id: int, error: Exception) -> None:
        notification_id = self.request_streams.pop(stream_id, None)
        self._bodies.pop(stream_id, None)
        if notification_id is None:
            return
        self.request_statuses.pop(notification_id, None)
        future = self.requests.pop(notification_id, None)
        if future is not None and not future.done():
            future.set_exception(error)
        self.free_channels.release()

    def _fail_all(self, error: Exception) -> None:
        for stream_id in list(self.request_streams):
            self._fail_stream(stream_id, error)
        for future in self.requests.values():
            if not future.done():
                future.set_exception(error)
        self.requests.clear()

    def _stream_reset(self, event: StreamReset) -> None:
        code = event.error_code
        error: Exception = (
            NotProcessed("stream refused")
            if code == ErrorCodes.REFUSED_STREAM
            else AnswerLost(f"stream reset ({_code_name(code)})")
        )
        self._fail_stream(event.stream_id or 0, error)
        self._close_when_drained()

    def on_response_received(self, headers: dict[bytes, bytes]) -> None:
        retry_after = headers.get(b"retry-after")
        if retry_after is not None:
            notification_id = headers.get(b"apns-id", b"").decode("utf8")
            with contextlib.suppress(ValueError):
                self.answer_extras.setdefault(notification_id, AnswerExtras()).retry_after_s = max(
                    0.0, float(retry_after)
                )
        if headers.get(b":status", b"").decode() == APNS_RESPONSE_CODE.SUCCESS:
            # aioapns answers a success by apns-id and would warn about one it did not send
            notification_id = headers.get(b"apns-id", b"").decode("utf8")
            future = self.requests.pop(notification_id, None)
            if future is not None and not future.done():
                future.set_result(NotificationResult(notification_id, APNS_RESPONSE_CODE.SUCCESS))
            return
        super().on_response_received(headers)

    def on_data_received(self, data: bytes, stream_id: int) -> None:
        self.conn.acknowledge_received_data(len(data), stream_id)
        self._bodies.setdefault(stream_id, bytearray()).extend(data)

    def on_stream_ended(self, stream_id: int) -> None:
        body = bytes(self._bodies.pop(stream_id, b""))
        notification_id = self.request_streams.get(stream_id)
        if notification_id is not None and notification_id in self.request_statuses:
            readable = _error_body(body)
            if readable is not body:
                extras = self.answer_extras.setdefault(notification_id, AnswerExtras())
                extras.raw_body = body[:500].decode("utf-8", "replace")
            super().on_data_received(readable, stream_id)
        # aioapns forgets the stream of an error answer but keeps a successful one forever
        self.request_streams.pop(stream_id, None)
        super().on_stream_ended(stream_id)
        self._close_when_drained()

    def on_connection_terminated(self, event: ConnectionTerminated) -> None:
        """The streams above last-stream-id were never processed; the others may still be
        answered (a graceful GOAWAY), so the connection stays open until they are."""
        self.retiring = True
        last = event.last_stream_id or 0
        reason = _goaway_reason(event.additional_data)
        what = f"GOAWAY {reason}" if reason else "GOAWAY"
        for stream_id in [s for s in self.request_streams if s > last]:
            self._fail_stream(stream_id, NotProcessed(f"{what} above its last stream"))
        self._close_when_drained()

    def _close_when_drained(self) -> None:
        if self.retiring and not self.request_streams:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        reason = f"connection lost ({type(exc).__name__})" if exc else "connection closed"
        self._fail_all(AnswerLost(reason))
        super().connection_lost(exc)


def _code_name(code: ErrorCodes | int | None) -> str:
    return code.name if isinstance(code, ErrorCodes) else str(code)


def _goaway_reason(data: bytes | None) -> str | None:
    """Apple puts its error JSON ({"reason": ...}) in a GOAWAY's debug data."""
    if not data:
        return None
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return data[:100].decode("utf-8", "replace")
    return str(parsed.get("reason")) if isinstance(parsed, dict) else None


EMPTY_BODY_REASON = "(empty body)"
UNREADABLE_BODY_REASON = "(unreadable body)"


def _error_body(body: bytes) -> bytes:
    """The JSON aioapns expects: Apple's body when it has a reason, else one naming what
    came back (the raw text is logged by the sender's classification)."""
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict) and parsed.get("reason"):
        return body
    reason = EMPTY_BODY_REASON if not body else UNREADABLE_BODY_REASON
    return json.dumps({"reason": reason, "raw": body[:200].decode("utf-8", "replace")}).encode()


class ProductionProtocol(_ProtocolFixes, APNsProductionClientProtocol):
    pass


class SandboxProtocol(_ProtocolFixes, APNsDevelopmentClientProtocol):
    pass


def _protocol_class(use_sandbox: bool) -> type[ProductionProtocol] | type[SandboxProtocol]:
    return SandboxProtocol if use_sandbox else ProductionProtocol


def _factory(
    pool: APNsKeyConnectionPool | APNsCertConnectionPool, *auth: AuthorizationHeaderProvider
) -> Any:
    # aioapns types on_connection_lost as returning NoReturn; discard_connection returns None.
    lost: Any = pool.discard_connection
    return partial(pool.protocol_class, pool.apns_topic or "", pool.loop, lost, *auth)


async def _open(
    pool: TokenAuthPool | CertificateAuthPool,
    factory: Any,
    route: tuple[str, int] | None,
) -> APNsBaseClientProtocol:
    host_name = pool.protocol_class.APNS_SERVER
    host, port = route if route else (host_name, pool.protocol_class.APNS_PORT)
    _, protocol = await asyncio.get_running_loop().create_connection(
        factory, host=host, port=port, ssl=pool.ssl_context, server_hostname=host_name
    )
    assert isinstance(protocol, _ProtocolFixes)
    # every connection of a pool reports into the pool's one map, which the sender reads
    protocol.answer_extras = pool.answer_extras
    return protocol


async def send_once(
    pool: TokenAuthPool | CertificateAuthPool, request: NotificationRequest, timeout_s: float
) -> NotificationResult:
    """Send one notification through a pool, once, or raise NotProcessed / AnswerLost
    within ``timeout_s``. aioapns' own ``send_notification`` loop (even at one attempt) logs
    and swallows the failure, sleeps a second after a failed connect, and raises a bare
    MaxAttemptsExceeded instead; Temporal retries, with the reason in hand."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        async with asyncio.timeout_at(deadline):
            connection = await pool.acquire()
    except TimeoutError:
        raise NotProcessed("no connection in time") from None
    assert isinstance(connection, _ProtocolFixes)
    return await connection.send_within(request, deadline)


class _Pooling:
    """aioapns' pool keeps waiting on its connections once it has its maximum, even after
    one of them closed (a GOAWAY, a reset); this one opens a new connection in its place."""

    connections: list[APNsBaseClientProtocol]
    max_connections: int
    _lock: asyncio.Lock

    async def create_connection(self) -> APNsBaseClientProtocol:
        raise NotImplementedError

    async def acquire(self) -> APNsBaseClientProtocol:
        while True:
            for connection in self.connections:
                if not connection.is_busy:
                    return connection
            async with self._lock:
                for connection in self.connections:
                    if not connection.is_busy:
                        return connection
                if len(self.connections) < self.max_connections:
                    try:
                        connection = await self.create_connection()
                    except (OSError, ssl.SSLError, TimeoutError) as error:
                        raise NotProcessed(f"cannot connect ({type(error).__name__})") from None
                    self.connections.append(connection)
                    return connection
            await asyncio.sleep(0.005)

    def discard_connection(self, connection: APNsBaseClientProtocol) -> None:
        if connection in self.connections:
            self.connections.remove(connection)


class TokenAuthPool(_Pooling, APNsKeyConnectionPool):
    """aioapns' token-auth pool with a shared provider token and an optional route."""

    def __init__(
        self,
        *,
        auth: SharedProviderToken,
        route: tuple[str, int] | None,
        **pool_options: Any,
    ) -> None:
        super().__init__(key=auth._key, key_id=auth._key_id, team_id=auth._team_id, **pool_options)
        self.protocol_class = _protocol_class(bool(pool_options.get("use_sandbox")))
        self.auth = auth
        self.route = route
        self.answer_extras: dict[str, AnswerExtras] = {}

    async def create_connection(self) -> APNsBaseClientProtocol:
        factory = _factory(self, self.auth)
        return await _open(self, factory, self.route)


class CertificateAuthPool(_Pooling, APNsCertConnectionPool):
    """aioapns' certificate-auth pool with an optional route."""

    def __init__(self, *, route: tuple[str, int] | None, **pool_options: Any) -> None:
        super().__init__(**pool_options)
        self.protocol_class = _protocol_class(bool(pool_options.get("use_sandbox")))
        self.route = route
        self.answer_extras: dict[str, AnswerExtras] = {}

    async def create_connection(self) -> APNsBaseClientProtocol:
        factory = _factory(self)
        return await _open(self, factory, self.route)


def configure_fcm_app(
    app: App,
    *,
    endpoint: str | None,
    ssl_context: ssl.SSLContext | None,
    max_connections: int,
    timeout_s: float,
) -> None:
    """Give a firebase-admin app's messaging service an HTTP/2 client without SDK retries.

    ``endpoint`` replaces ``https://fcm.googleapis.com`` (the simulators); ``ssl_context``
    replaces the default trust store. Authentication stays google-auth's (an OAuth2 token from
    the service account's ``token_uri``) through :class:`OAuthFlow`.
    """
    service = messaging._get_messaging_service(app)
    if endpoint:
        service._fcm_url = f"{endpoint.rstrip('/')}/v1/projects/{service._project_id}/messages:send"
    # tidings' own HTTP/2 transport: it tells a request FCM cannot have processed (resent
    # at once) from one whose answer was lost (see tidings.push.h2transport)
    transport = H2Transport(ssl_context=ssl_context, max_connections=max_connections)
    wrapper = service._async_client
    wrapper._async_client = httpx.AsyncClient(
        http2=True,
        timeout=timeout_s,
        headers=wrapper._headers,
        auth=OAuthFlow(service._credential),
        transport=transport,
    )
    wrapper._timeout = timeout_s


THIRD_PARTY_AUTH_CODES = (b"THIRD_PARTY_AUTH_ERROR", b"APNS_AUTH_ERROR")


class TokenRefreshFailed(httpx.RequestError):
    """The OAuth2 token endpoint refused (or could not be reached for) the service account.

    An httpx error, so firebase-admin reports it on the one message whose request it stopped
    (as an UnknownError caused by it) instead of failing a whole ``send_each_async`` batch
    and the answers that batch already had. ``error`` is google-auth's exception."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"OAuth2 token refresh failed: {error}")
        self.error = error


# A token endpoint that just refused the service account is not asked again for this long:
# every request of a batch would otherwise fetch (and fail) once more.
REFRESH_FAILURE_MEMORY_S = 5.0


class OAuthFlow(httpx.Auth):
    """firebase-admin's OAuth2 flow for an async client, bounded.

    * A valid token is applied as is; an expired one is refreshed first.
    * On a 401 the token is refreshed once and the request sent once more, as Google advises.
      Requests that saw the same stale token share one refresh: a batch of 500 costs one
      token fetch, not 500.
    * A 401 answered THIRD_PARTY_AUTH_ERROR (FCM could not authenticate to APNs or Web Push)
      is returned as is: a new OAuth2 token cannot fix it, and it is a configuration fault.
    * google-auth refreshes with a blocking ``requests`` call: it runs in a thread, so the
      worker's event loop (heartbeats, the other sends) keeps running.
    * A refresh that fails is remembered briefly and raised to the requests that follow,
      as :class:`TokenRefreshFailed`.
    """

    def __init__(self, credential: google_credentials.Credentials) -> None:
        self._credential = credential
        self._lock: asyncio.Lock | None = None
        self._failure: tuple[float, Exception] | None = None
        self.refreshes = 0

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("tidings sends to FCM with an async client only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if not self._credential.valid:
            await self._refresh(stale_token=None)
        sent_with = self._credential.token
        self._credential.apply(request.headers)  # type: ignore[no-untyped-call]
        response = yield request
        if response.status_code != 401:
            return
        await response.aread()
        if any(code in response.content for code in THIRD_PARTY_AUTH_CODES):
            return
        await self._refresh(stale_token=sent_with)
        self._credential.apply(request.headers)  # type: ignore[no-untyped-call]
        yield request

    async def _refresh(self, stale_token: str | None) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if stale_token is not None and self._credential.token != stale_token:
                return  # another request refreshed it meanwhile
            if stale_token is None and self._credential.valid:
                return
            if self._failure is not None:
                failed_at, error = self._failure
                if time.monotonic() - failed_at < REFRESH_FAILURE_MEMORY_S:
                    raise error
            try:
                await asyncio.to_thread(self._credential.refresh, google_auth_requests.Request())
            except Exception as error:
                failure = TokenRefreshFailed(error)
                self._failure = (time.monotonic(), failure)
                raise failure from error
            self._failure = None
            self.refreshes += 1


def oauth_flow(app: App) -> OAuthFlow:
    """The flow authenticating an app configured by :func:`configure_fcm_app`."""
    auth = messaging._get_messaging_service(app)._async_client._async_client.auth
    assert isinstance(auth, OAuthFlow)
    return auth


def fcm_send_url(app: App) -> str:
    """The URL firebase-admin will post sends to, for logs and the adapter tests."""
    return str(messaging._get_messaging_service(app)._fcm_url)


async def close_fcm_app(app: App) -> None:
    """Close the HTTP/2 client in this loop, then delete the app in a thread:
    firebase-admin's own close calls ``asyncio.run``, which a running loop forbids."""
    service = messaging._get_messaging_service(app)
    await service._async_client._async_client.aclose()
    await asyncio.to_thread(firebase_admin.delete_app, app)
