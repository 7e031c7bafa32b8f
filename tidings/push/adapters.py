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
* firebase-admin retries POSTs on 500/503 inside its HTTP client, under Temporal's retries.

So this module subclasses aioapns' connection pools (one shared JWT provider per signing key,
an optional host:port route that keeps Apple's host name for SNI and certificate checks) and
rebuilds firebase-admin's async HTTP client with retries off, our TLS trust and, optionally,
another base URL. Everything else (HTTP/2 framing, stream accounting, FCM message encoding,
error parsing, OAuth2 through the service account's ``token_uri``) stays the libraries' own.

tests/push/test_adapters.py fails loudly if an upgrade of either library moves what this
module relies on.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from functools import partial
from typing import Any

import firebase_admin
import httpx
import jwt
from aioapns.connection import (
    APNsBaseClientProtocol,
    APNsCertConnectionPool,
    APNsDevelopmentClientProtocol,
    APNsKeyConnectionPool,
    APNsProductionClientProtocol,
    AuthorizationHeaderProvider,
    ChannelPool,
)
from firebase_admin import App, messaging
from firebase_admin._http_client import GoogleAuthCredentialFlow

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


class _ProtocolFixes(APNsBaseClientProtocol):
    """What tidings changes in aioapns' connection protocol.

    * ``StreamSlots`` instead of aioapns' semaphore (see above).
    * HTTP/2 flow control: aioapns never gives back the window of response bodies it reads,
      so after ~64 KiB of error bodies (about 1,200 answers of 410) a connection stalls.
    * Whole bodies: aioapns parses every DATA frame as a complete JSON document and leaves an
      error answer with an empty or non-JSON body (an empty 500, an HTML 502) unresolved, or
      breaks the connection on it. Bodies are buffered per stream and handed over once the
      stream ends; an unreadable one becomes a reason that says so, classified as unknown.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.free_channels = StreamSlots(INITIAL_STREAMS)
        self._bodies: dict[int, bytearray] = {}

    def on_data_received(self, data: bytes, stream_id: int) -> None:
        self.conn.acknowledge_received_data(len(data), stream_id)
        self._bodies.setdefault(stream_id, bytearray()).extend(data)

    def on_stream_ended(self, stream_id: int) -> None:
        body = bytes(self._bodies.pop(stream_id, b""))
        notification_id = self.request_streams.get(stream_id)
        if notification_id is not None and notification_id in self.request_statuses:
            super().on_data_received(_error_body(body), stream_id)
        # aioapns forgets the stream of an error answer but keeps a successful one forever
        self.request_streams.pop(stream_id, None)
        super().on_stream_ended(stream_id)


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
    pool: APNsKeyConnectionPool | APNsCertConnectionPool,
    factory: Any,
    route: tuple[str, int] | None,
) -> APNsBaseClientProtocol:
    host_name = pool.protocol_class.APNS_SERVER
    host, port = route if route else (host_name, pool.protocol_class.APNS_PORT)
    _, protocol = await asyncio.get_running_loop().create_connection(
        factory, host=host, port=port, ssl=pool.ssl_context, server_hostname=host_name
    )
    return protocol  # type: ignore[no-any-return]


class TokenAuthPool(APNsKeyConnectionPool):
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

    async def create_connection(self) -> APNsBaseClientProtocol:
        factory = _factory(self, self.auth)
        return await _open(self, factory, self.route)


class CertificateAuthPool(APNsCertConnectionPool):
    """aioapns' certificate-auth pool with an optional route."""

    def __init__(self, *, route: tuple[str, int] | None, **pool_options: Any) -> None:
        super().__init__(**pool_options)
        self.protocol_class = _protocol_class(bool(pool_options.get("use_sandbox")))
        self.route = route

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
    replaces the default trust store. Authentication keeps firebase-admin's own flow: an OAuth2
    token from the service account's ``token_uri``, refreshed once on a 401.
    """
    service = messaging._get_messaging_service(app)
    if endpoint:
        service._fcm_url = f"{endpoint.rstrip('/')}/v1/projects/{service._project_id}/messages:send"
    transport = httpx.AsyncHTTPTransport(
        http2=True,
        retries=0,
        verify=ssl_context if ssl_context is not None else True,
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    )
    wrapper = service._async_client
    wrapper._async_client = httpx.AsyncClient(
        http2=True,
        timeout=timeout_s,
        headers=wrapper._headers,
        auth=GoogleAuthCredentialFlow(service._credential),
        transport=transport,
    )
    wrapper._timeout = timeout_s


def fcm_send_url(app: App) -> str:
    """The URL firebase-admin will post sends to, for logs and the adapter tests."""
    return str(messaging._get_messaging_service(app)._fcm_url)


async def close_fcm_app(app: App) -> None:
    """Close the HTTP/2 client in this loop, then delete the app in a thread:
    firebase-admin's own close calls ``asyncio.run``, which a running loop forbids."""
    service = messaging._get_messaging_service(app)
    await service._async_client._async_client.aclose()
    await asyncio.to_thread(firebase_admin.delete_app, app)
