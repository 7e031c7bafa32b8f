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
from aioapns.exceptions import ConnectionClosed
from aioapns.exceptions import ConnectionError as ApnsConnectionError

from tidings.push.adapters import (
    CertificateAuthPool,
    SharedProviderToken,
    TokenAuthPool,
    send_once,
)
from tidings.push.credentials import ApnsCertificateCredentials, ApnsTokenCredentials
from tidings.push.masking import mask_token
from tidings.push.message import apns_payload, apns_priority
from tidings.push.outcome import Outcome, SendResult, apns_gone_at, apns_known, classify_apns
from tidings.push.sender import ProviderRoutes, SendItem, seconds_left

log = logging.getLogger(__name__)

CONNECTION_ERRORS = (ConnectionClosed, ApnsConnectionError, OSError)


class ApnsSender:
    """Sends to APNs. Each request is tried once (``send_once`` instead of aioapns' resend
    loop): Temporal is the only retry layer. At most ``max_in_flight`` requests are in flight,
    over at most ``max_connections`` HTTP/2 connections kept open between batches."""

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
        return list(await asyncio.gather(*(self.send(item) for item in items)))

    async def send(self, item: SendItem) -> SendResult:
        """One push; every answer and every failure becomes a classified result."""
        message = item.message
        request = NotificationRequest(
            device_token=item.token,
            message=apns_payload(message, item.tracking_id),
            notification_id=str(uuid.uuid4()),
            time_to_live=seconds_left(item.expires_at, datetime.now(UTC)),
            priority=apns_priority(message),
            collapse_key=item.tracking_id,
            push_type=PushType.BACKGROUND if message.is_background else PushType.ALERT,
        )
        async with self._slots:
            # the JWT this request goes out with (minted now if it is the first): an
            # ExpiredProviderToken answer renews it only if no other request already did
            generation = 0
            if self.auth is not None:
                self.auth.get_header()
                generation = self.auth.generation
            try:
                answer = await asyncio.wait_for(send_once(self._pool, request), self._timeout_s)
            except TimeoutError:
                return SendResult(Outcome.RETRY_LATER, reason="timeout")
            except CONNECTION_ERRORS as error:
                detail = str(error) if isinstance(error, ConnectionClosed) else ""
                what = detail if detail.startswith("GOAWAY") else type(error).__name__
                return SendResult(Outcome.RETRY_LATER, reason=f"connection: {what}")
            except Exception as error:  # a client bug must not lose the batch's other results
                log.exception("APNs client failed for %s", mask_token(item.token))
                return SendResult(Outcome.RETRY_LATER, reason=f"client: {type(error).__name__}")
            finally:
                extras = self._pool.answer_extras.pop(request.notification_id, None)
        status = int(answer.status)
        reason: str | None = answer.description
        outcome = classify_apns(status, reason, answer.timestamp)
        known = apns_known(status, reason, answer.timestamp)
        raw = extras.raw_body if extras is not None else None
        if reason == "ExpiredProviderToken" and self.auth is not None:
            self.auth.renew(generation)
        if not known:
            log.warning(
                "APNs answered %s %s (timestamp %s, body %.300r) for %s, outside the reference "
                "table: treated as %s",
                status,
                reason,
                answer.timestamp,
                raw,
                mask_token(item.token),
                outcome.value,
            )
        elif outcome is not Outcome.DELIVERED:
            log.info("APNs %s %s for %s", status, reason, mask_token(item.token))
        return SendResult(
            outcome,
            status=status,
            reason=reason,
            message_id=answer.notification_id if outcome is Outcome.DELIVERED else None,
            retry_after_s=extras.retry_after_s if extras is not None else None,
            gone_at=apns_gone_at(answer.timestamp),
            raw=raw,
            known=known,
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
