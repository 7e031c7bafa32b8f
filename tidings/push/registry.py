"""One provider client per app credential per worker process (DESIGN.md decision 5).

A new APNs JWT per call is rejected by Apple, and a TLS + HTTP/2 handshake per batch wastes
the connection Apple wants kept open; clients are created on first use and replaced when the
app's credentials change (its ``credentials_version``, or what a referenced secret reads
today: ``tidings.store.apps.credentials_generation``), so a rotation takes effect without a
restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tidings.push.apns import ApnsSender
from tidings.push.credentials import AppCredentials
from tidings.push.fcm import FcmSender
from tidings.push.sender import ProviderRoutes, Sender

log = logging.getLogger(__name__)


# What identifies one set of an app's credentials in a worker process.
Generation = int | str


@dataclass
class AppSenders:
    """An app's senders, keyed by provider name ("apns", "fcm"): the delivery activity sends
    each device's push through the sender of its provider, whatever that provider is."""

    version: Generation
    apns: ApnsSender | None
    fcm: FcmSender | None

    @property
    def by_provider(self) -> dict[str, Sender]:
        senders: dict[str, Sender] = {}
        if self.apns is not None:
            senders["apns"] = self.apns
        if self.fcm is not None:
            senders["fcm"] = self.fcm
        return senders

    async def close(self) -> None:
        for sender in self.by_provider.values():
            await sender.close()


class SenderRegistry:
    def __init__(self, routes: ProviderRoutes, *, max_in_flight: int, timeout_s: float) -> None:
        self.routes = routes
        self._max_in_flight = max_in_flight
        self._timeout_s = timeout_s
        self._senders: dict[str, AppSenders] = {}
        self._lock = asyncio.Lock()

    async def get(
        self,
        app_id: str,
        version: Generation,
        load_credentials: Callable[[], Awaitable[AppCredentials]],
    ) -> AppSenders:
        """The app's senders for the credentials ``version`` names; credentials are opened
        only when building."""
        current = self._senders.get(app_id)
        if current is not None and current.version == version:
            return current
        async with self._lock:
            current = self._senders.get(app_id)
            if current is not None and current.version == version:
                return current
            credentials = await load_credentials()
            fresh = await self._build(credentials, version)
            self._senders[app_id] = fresh
        if current is not None:
            log.info("app %s credentials changed (v%s -> v%s)", app_id, current.version, version)
            await current.close()
        return fresh

    async def _build(self, credentials: AppCredentials, version: Generation) -> AppSenders:
        """aioapns binds its pool to the running loop, so the APNs client is built here;
        firebase-admin's app (key parsing, and HTTP clients it makes and tidings replaces)
        takes a few hundred milliseconds of CPU, built in a thread so the worker's other
        activities (and their heartbeats) keep running."""
        apns = (
            ApnsSender(
                credentials.apns,
                routes=self.routes,
                max_in_flight=self._max_in_flight,
                timeout_s=self._timeout_s,
            )
            if credentials.apns is not None
            else None
        )
        fcm = (
            await asyncio.to_thread(
                FcmSender,
                credentials.fcm,
                app_name=f"tidings-{credentials.app_id}-v{version}",
                routes=self.routes,
                max_in_flight=self._max_in_flight,
                timeout_s=self._timeout_s,
            )
            if credentials.fcm is not None
            else None
        )
        return AppSenders(version=version, apns=apns, fcm=fcm)

    async def close(self) -> None:
        senders, self._senders = list(self._senders.values()), {}
        for app_senders in senders:
            await app_senders.close()
