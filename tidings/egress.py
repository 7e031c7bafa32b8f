"""Where tidings may connect out to: URLs given by its callers, kept from reaching inside the
network (server-side request forgery).

Compat registration callbacks (``x-ms-callback-url``) and webhook endpoints are URLs a
caller chose, and tidings POSTs to them from inside its own network. So they may only reach
public addresses, unless ops allow-list hosts or networks (``TIDINGS_CALLBACK_ALLOWED``):

- a URL is checked when it is given: its host is resolved and every address it names must
  be allowed; a loopback, link-local, private, shared, reserved, multicast or unspecified
  one is refused. An IPv6 address carrying an IPv4 one (IPv4-mapped, IPv4-compatible,
  NAT64, 6to4) is judged by the IPv4 address it carries;
- when a request is sent, the connection goes to an address checked again at that moment
  (a name that resolves elsewhere by then, DNS rebinding, is not called);
- redirects are never followed (the callers of :func:`guarded_transport` turn them off).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from tidings.settings import Settings

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


class DestinationRefused(ValueError):
    """The URL names a place tidings does not call; the message says why."""


@dataclass(frozen=True)
class EgressPolicy:
    """Which private destinations ops allow (every public one is), and how long a request to
    a caller's URL may take."""

    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[Network, ...] = ()
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        hosts: set[str] = set()
        networks: list[Network] = []
        for item in settings.callback_allowed:
            if "/" in item:
                networks.append(ip_network(item, strict=False))
            else:
                hosts.add(item.strip("[]").lower())
        return cls(frozenset(hosts), tuple(networks), settings.callback_timeout_s)

    def allow_listed(self, host: str, address: Address) -> bool:
        """Whether ops named this host or address (or a network holding it) themselves."""
        if host.lower() in self.allowed_hosts or str(address) in self.allowed_hosts:
            return True
        return any(address in network for network in self.allowed_networks)

    def allows(self, host: str, address: Address) -> bool:
        return self.allow_listed(host, address) or is_public(address)


# IPv6 forms that carry an IPv4 address the packet ends up at: a request to one of them is a
# request to that IPv4 address, and is judged as one
NAT64 = IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix
NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")  # RFC 8215: the operator's own translators
IPV4_COMPATIBLE = IPv6Network("::/96")  # deprecated, still routed by some stacks


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv4-mapped, IPv4-compatible, NAT64 or 6to4 address carries."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64 or address in IPV4_COMPATIBLE:
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def is_public(address: Address) -> bool:
    """Whether the address is on the public internet; an IPv6 address carrying an IPv4 one
    counts as the IPv4 address it carries, and a local-use NAT64 address never is."""
    if isinstance(address, IPv6Address):
        if address in NAT64_LOCAL:
            return False
        embedded = embedded_ipv4(address)
        if embedded is not None:
            address = embedded
    return address.is_global and not address.is_multicast


async def resolve(host: str, port: int) -> list[Address]:
    """Every address the host names (an address literal names itself)."""
    try:
        return [ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise DestinationRefused(f"its host {host!r} does not resolve ({error.strerror})") from None
    addresses: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 zone
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationRefused(f"its host {host!r} does not resolve")
    return addresses


async def allowed_addresses(policy: EgressPolicy, host: str, port: int) -> list[Address]:
    """The host's addresses, if the policy allows every one of them."""
    addresses = await resolve(host, port)
    refused = [a for a in addresses if not policy.allows(host, a)]
    if refused:
        raise DestinationRefused(
            f"its host {host!r} resolves to {refused[0]}, a loopback, link-local, private or "
            "reserved address (ops may allow it with TIDINGS_CALLBACK_ALLOWED)"
        )
    return addresses


def host_and_port(url: str) -> tuple[str, int]:
    """The URL's host and port; DestinationRefused unless it is an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused("it must be an absolute http(s) URL")
    try:
        port = parts.port
    except ValueError:
        raise DestinationRefused("its port is not a number from 0 to 65535") from None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_destination(url: str, policy: EgressPolicy) -> list[Address]:
    """The addresses of the URL's host, if the policy allows every one (else
    DestinationRefused, saying why)."""
    host, port = host_and_port(url)
    return await allowed_addresses(policy, host, port)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to an address the policy allows, checked as the connection opens; TLS
    still verifies the URL's host name (httpcore takes it from the request, not from here)."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await allowed_addresses(self._policy, host, port)
        except DestinationRefused as error:
            raise httpcore.ConnectError(f"destination refused: {error}") from None
        return await self._inner.connect_tcp(
            str(addresses[0]), port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("tidings never connects out to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(
    policy: EgressPolicy, *, max_connections: int = 1
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through the policy's check."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx takes no network backend of its own: its pool is swapped for one that connects
    # through the guard (same TLS context)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=max_connections,
        network_backend=_GuardedBackend(policy),
    )
    return transport
