"""APNs sender on aioapns: one HTTP/2 client per app credential, bounded streams in flight."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from aioapns import NotificationRequest, PushType
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as ApnsConnectionError

from tidings.push.adapters import CertificateAuthPool, SharedProviderToken, TokenAuthPool
from tidings.push.credentials import ApnsCertificateCredentials, ApnsTokenCredentials
from tidings.push.masking import mask_token
from tidings.push.message import apns_payload, apns_priority
from tidings.push.outcome import Outcome, SendResult, apns_gone_at, classify_apns
from tidings.push.sender import ProviderRoutes, SendItem, seconds_left

log = logging.getLogger(__name__)

CONNECTION_ERRORS = (ConnectionClosed, MaxAttemptsExceeded, ApnsConnectionError, OSError)


class ApnsSender:
    """Sends to APNs. aioapns' own reconnect-and-resend loop is limited to one attempt:
    Temporal is the only retry layer."""

    def __init__(
        self,
        credentials: ApnsTokenCredentials | ApnsCertificateCredentials,
        *,
        routes: ProviderRoutes,
        max_in_flight: int,
        timeout_s: float,
        max_connections: int = 2,
    ) -> None:
        self.credentials = credentials
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_in_flight)
        ssl_context = routes.ssl_context() or ssl.create_default_context()
        options = {
            "topic": credentials.bundle_id,
            "max_connections": max_connections,
            "max_connection_attempts": 1,
            "use_sandbox": credentials.environment == "sandbox",
            "ssl_context": ssl_context,
        }
        self.auth: SharedProviderToken | None = None
        self._pool: TokenAuthPool | CertificateAuthPool
        if isinstance(credentials, ApnsTokenCredentials):
            self.auth = SharedProviderToken(
                credentials.signing_key.get_secret_value(), credentials.key_id, credentials.team_id
            )
            self._pool = TokenAuthPool(auth=self.auth, route=routes.apns_route, **options)
        else:
            self._pool = _certificate_pool(credentials, routes.apns_route, options)

    async def send_batch(self, items: Sequence[SendItem]) -> list[SendResult]:
        return list(await asyncio.gather(*(self._send(item) for item in items)))

    async def _send(self, item: SendItem) -> SendResult:
        message = item.message
        request = NotificationRequest(
            device_token=item.token,
            message=apns_payload(message, item.tracking_id),
            notification_id=str(uuid.uuid4()),
            time_to_live=seconds_left(item.expires_at, datetime.now(UTC)),
            priority=apns_priority(message),
            collapse_key=item.tracking_id,
            push_type=PushType.BACKGROUND if message.push_type == "background" else PushType.ALERT,
        )
        generation = self.auth.generation if self.auth else 0
        async with self._slots:
            try:
                answer = await asyncio.wait_for(
                    self._pool.send_notification(request), self._timeout_s
                )
            except TimeoutError:
                return SendResult(Outcome.RETRY_LATER, reason="timeout")
            except CONNECTION_ERRORS as error:
                return SendResult(Outcome.RETRY_LATER, reason=f"connection: {type(error).__name__}")
        status = int(answer.status)
        reason = answer.description
        outcome = classify_apns(status, reason, answer.timestamp)
        if reason == "ExpiredProviderToken" and self.auth is not None:
            self.auth.renew(generation)
        if outcome is not Outcome.DELIVERED:
            log.info("APNs %s %s for %s", status, reason, mask_token(item.token))
        return SendResult(
            outcome,
            status=status,
            reason=reason,
            message_id=answer.notification_id if outcome is Outcome.DELIVERED else None,
            gone_at=apns_gone_at(answer.timestamp),
        )

    async def close(self) -> None:
        self._pool.close()


def _certificate_pool(
    credentials: ApnsCertificateCredentials,
    route: tuple[str, int] | None,
    options: dict[str, object],
) -> CertificateAuthPool:
    # aioapns loads client certificates from a path; the PEM lives on disk only while the
    # TLS context reads it, in a file only this user can read.
    fd, path = tempfile.mkstemp(prefix="tidings-apns-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(credentials.certificate.get_secret_value())
        return CertificateAuthPool(route=route, cert_file=path, **options)
    finally:
        os.unlink(path)
