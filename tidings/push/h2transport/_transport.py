"""The httpx transport: per-origin pools, resending what the server did not process."""

from __future__ import annotations

import asyncio
import logging
import ssl

import httpx

from ._connection import Connection, Timeouts
from ._errors import RequestNotProcessed, Unsent
from ._pool import Pool

logger = logging.getLogger(__name__)

# Connection-specific headers HTTP/2 forbids (RFC 9113 §8.2.2); Host becomes :authority.
_SKIPPED_HEADERS = frozenset(
    {b"host", b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


def _request_headers(request: httpx.Request) -> list[tuple[bytes, bytes]]:
    url = request.url
    authority = url.netloc
    rest: list[tuple[bytes, bytes]] = []
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered == b"host":
            authority = value
        elif lowered not in _SKIPPED_HEADERS and (lowered != b"te" or value == b"trailers"):
            rest.append((lowered, value))
    return [
        (b":method", request.method.encode("ascii")),
        (b":authority", authority),
        (b":scheme", b"https"),
        (b":path", url.raw_path),
        *rest,
    ]


class H2Transport(httpx.AsyncBaseTransport):
    """HTTP/2 over TLS to HTTPS origins, failing only with :class:`RequestNotProcessed` or
    :class:`AnswerLost` (see :mod:`tidings.push.h2transport`).

    ``ssl_context`` is used for every connection (default: httpx's, certifi's trust store);
    the transport sets its ALPN protocols to ``h2``. SNI and certificate checks use the URL's
    host (or the request's ``sni_hostname`` extension), as httpx does. Per origin, up to
    ``max_connections`` connections take new streams (a connection draining after a GOAWAY
    no longer counts); each is closed after ``keepalive_expiry`` seconds without a stream
    (None: kept). A request the server did not process is sent again up to ``max_resends``
    times. Answers are read whole, up to ``max_response_bytes``. Timeouts come from httpx
    (``request.extensions["timeout"]``): ``connect`` (TCP, TLS and the server's SETTINGS),
    ``pool`` (waiting for a stream), ``write`` (waiting to send), ``read`` (waiting for the
    answer, measured from the last frame of it received).
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 10,
        keepalive_expiry: float | None = 30.0,
        max_resends: int = 3,
        max_response_bytes: int = 1 << 20,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        if max_resends < 0:
            raise ValueError(f"max_resends must not be negative, not {max_resends}")
        if max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be positive, not {max_response_bytes}")
        if keepalive_expiry is not None and keepalive_expiry <= 0:
            raise ValueError(f"keepalive_expiry must be positive or None, not {keepalive_expiry}")
        context = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        context.set_alpn_protocols(["h2"])
        self._ssl_context = context
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._max_resends = max_resends
        self._max_response_bytes = max_response_bytes
        self._pools: dict[tuple[str, int, str], Pool] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RequestNotProcessed("transport closed")
        pool = self._pool(request)
        body = await request.aread()
        headers = _request_headers(request)
        timeouts: Timeouts = request.extensions.get("timeout", {})
        avoid: Connection | None = None
        resends = 0
        while True:
            try:
                conn = await pool.acquire(timeouts, avoid)
            except RequestNotProcessed as error:
                if resends:
                    raise RequestNotProcessed(error.reason, resends=resends) from None
                raise
            try:
                status, response_headers, content = await conn.exchange(headers, body, timeouts)
            except Unsent as unsent:
                if resends >= self._max_resends or pool.closed:
                    raise RequestNotProcessed(unsent.reason, resends=resends) from None
                resends += 1
                avoid = conn
                logger.debug("sending again a request %s did not process: %s", pool.origin, unsent)
                continue
            return httpx.Response(
                status,
                headers=response_headers,
                content=content,
                extensions={"http_version": b"HTTP/2"},
            )

    def _pool(self, request: httpx.Request) -> Pool:
        url = request.url
        if url.scheme != "https":
            raise httpx.UnsupportedProtocol(
                f"H2Transport sends over HTTPS only, not {url.scheme!r}", request=request
            )
        sni = request.extensions.get("sni_hostname")
        server_hostname = sni.decode("ascii") if isinstance(sni, bytes) else sni or url.host
        key = (url.host, url.port or 443, server_hostname)
        pool = self._pools.get(key)
        if pool is None or pool.loop is not asyncio.get_running_loop():
            # a pool's futures belong to the event loop it was made in
            pool = Pool(
                host=url.host,
                port=url.port or 443,
                server_hostname=server_hostname,
                ssl_context=self._ssl_context,
                max_connections=self._max_connections,
                keepalive_expiry=self._keepalive_expiry,
                max_response_bytes=self._max_response_bytes,
            )
            self._pools[key] = pool
        return pool

    async def aclose(self) -> None:
        """Close every connection; requests in flight fail as :class:`AnswerLost` when they
        were sent whole, else as :class:`RequestNotProcessed`."""
        self._closed = True
        pools = list(self._pools.values())
        self._pools.clear()
        await asyncio.gather(*(pool.aclose() for pool in pools))
