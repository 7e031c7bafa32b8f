"""A limit on failed authentications per source, kept in this process' memory.

Each source (a client address; an IPv6 client by its /64, which one host usually holds whole)
has a bucket of failures it may make: it holds ``burst`` and refills at ``refill_per_s``. A
failure with the bucket empty is answered 429 with ``Retry-After``. Only failures are limited:
a valid key is checked and served whatever its source's bucket holds, so an attacker sharing
an address (a NAT, a proxy) with a real backend never locks it out.

Memory stays bounded: at most ``max_sources`` buckets are kept, the least recently failing
dropped first, and a bucket that has refilled is as good as none, so it goes too. An attacker
rotating through more sources than that can only evict buckets, never grow the table.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network, ip_address

from starlette.types import Scope

DEFAULT_BURST = 20
DEFAULT_REFILL_PER_S = 1 / 3  # 20 failures a minute, sustained
DEFAULT_MAX_SOURCES = 10_000


def source_of(scope: Scope) -> str:
    """The client's address as the limit counts it (an IPv6 client by its /64 network)."""
    client = scope.get("client")
    host = client[0] if client else None
    if not host:
        return "unknown"
    try:
        address = ip_address(host)
    except ValueError:
        return str(host)
    if isinstance(address, IPv6Address) and address.ipv4_mapped is None:
        return str(IPv6Network((address, 64), strict=False))
    return str(address.ipv4_mapped if isinstance(address, IPv6Address) else address)


@dataclass
class _Bucket:
    tokens: float
    at: float


class FailedAuthentications:
    def __init__(
        self,
        *,
        burst: int = DEFAULT_BURST,
        refill_per_s: float = DEFAULT_REFILL_PER_S,
        max_sources: int = DEFAULT_MAX_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.refill_per_s = refill_per_s
        self.max_sources = max_sources
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def fail(self, source: str) -> int | None:
        """Count a failed authentication from ``source``: None while it is within its limit,
        else the seconds to wait before another failure is answered (for ``Retry-After``)."""
        now = self._clock()
        bucket = self._refilled(source, now)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return max(1, math.ceil((1 - bucket.tokens) / self.refill_per_s))

    def _refilled(self, source: str, now: float) -> _Bucket:
        bucket = self._buckets.pop(source, None)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), at=now)
        else:
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.refill_per_s)
            bucket.at = now
        self._buckets[source] = bucket  # the most recent last
        self._forget(now)
        return bucket

    def _forget(self, now: float) -> None:
        """Drop the oldest buckets beyond the bound, and those that have refilled."""
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        full_after = self.burst / self.refill_per_s
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.at < full_after:
                break
            self._buckets.popitem(last=False)
