"""APNs sender on aioapns: one HTTP/2 client per app credential, bounded streams in flight."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from aioapns import NotificationRequest, PushType
from aioapns.common import NotificationResult

from tidings.observe.metrics import PROVIDER_LATENCY
from tidings.push.adapters import (
    AnswerExtras,
    AnswerLost,
    CertificateAuthPool,
    NotProcessed,
    SharedProviderToken,
    TokenAuthPool,
    send_once,
)
from tidings.push.credentials import ApnsCertificateCredentials, ApnsTokenCredentials
from tidings.push.masking import mask_token
from tidings.push.message import apns_payload, apns_priority
from tidings.push.outcome import Outcome, SendResult, apns_gone_at, apns_known, classify_apns
from tidings.push.sender import (
    NOT_PROCESSED_RESENDS,
    NOT_SENT_HALTED,
    URGENT_SENDS,
    ProviderRoutes,
    ResultSink,
    SendItem,
    seconds_left,
    sends_halted,
    urgent_slots,
)

log = logging.getLogger(__name__)

APNS_ID_NAMESPACE = uuid.UUID("8f7c0e52-2b1d-4a55-9b8e-3c0d6f1e2a47")


def apns_id_for(tracking_id: str) -> str:
    """The push's ``apns-id``: its tracking id when that is a UUID (every ledger row's is),
    else a UUID derived from it. Either way every resend of a push carries the same one."""
    try:
        return str(uuid.UUID(tracking_id))
    except ValueError:
        return str(uuid.uuid5(APNS_ID_NAMESPACE, tracking_id))


class ApnsSender:
    """Sends to APNs. A request Apple may have processed is tried once (``send_once``
    instead of aioapns' resend loop): Temporal is the only retry layer. A request Apple
    cannot have processed (refused, above a GOAWAY's last stream) is resent at once on a new
    connection. At most ``max_in_flight`` requests are in flight, over at most
    ``max_connections`` HTTP/2 connections kept open between batches.

    Each push goes out with its ledger row's tracking id as ``apns-id`` and collapse id, so a
    resend after a lost answer is the same notification to Apple and to the device."""

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
        self._urgent_slots = asyncio.Semaphore(urgent_slots(max_in_flight))
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

    async def send_batch(
        self, items: Sequence[SendItem], on_result: ResultSink | None = None
    ) -> list[SendResult]:
        slots = self._urgent_slots if URGENT_SENDS.get() else self._slots

        async def one(index: int, item: SendItem) -> SendResult:
            async with slots:
                if sends_halted():
                    result = SendResult(Outcome.RETRY_LATER, reason=NOT_SENT_HALTED)
                else:
                    started = time.perf_counter()
                    result = await self._send_in_slot(item)
                    PROVIDER_LATENCY.labels("apns", result.outcome.value).observe(
                        time.perf_counter() - started
                    )
                recorded = on_result(index, result) if on_result is not None else None
                if recorded is not None:
                    await recorded
            return result

        return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))

    async def send(self, item: SendItem) -> SendResult:
        """One push; every answer and every failure becomes a classified result."""
        async with self._urgent_slots if URGENT_SENDS.get() else self._slots:
            return await self._send_in_slot(item)

    async def _send_in_slot(self, item: SendItem) -> SendResult:
        message = item.message
        request = NotificationRequest(
            device_token=item.token,
            message=apns_payload(message, item.tracking_id),
            notification_id=apns_id_for(item.tracking_id),
            time_to_live=seconds_left(item.expires_at, datetime.now(UTC)),
            priority=apns_priority(message),
            collapse_key=item.tracking_id,
            push_type=PushType.BACKGROUND if message.is_background else PushType.ALERT,
        )
        # the JWT this request goes out with (minted now if it is the first): an
        # ExpiredProviderToken answer renews it only if no other request already did
        generation = 0
        if self.auth is not None:
            self.auth.get_header()
            generation = self.auth.generation
        answer, extras, failure = await self._exchange(request, item)
        if failure is not None:
            return failure
        assert answer is not None
        return self._classify(answer, extras, generation, item)

    async def _exchange(
        self, request: NotificationRequest, item: SendItem
    ) -> tuple[NotificationResult | None, AnswerExtras | None, SendResult | None]:
        """The answer (and what it carried beyond aioapns' result), or the failure."""
        not_processed = ""
        for _ in range(1 + NOT_PROCESSED_RESENDS):
            try:
                answer = await send_once(self._pool, request, self._timeout_s)
            except NotProcessed as error:
                not_processed = error.reason
                continue
            except AnswerLost as error:
                return None, None, SendResult(Outcome.ANSWER_LOST, reason=error.reason)
            except Exception as error:  # a client bug must not lose the batch's other results
                log.exception("APNs client failed for %s", mask_token(item.token))
                failed = SendResult(Outcome.ANSWER_LOST, reason=f"client: {type(error).__name__}")
                return None, None, failed
            finally:
                extras = self._pool.answer_extras.pop(request.notification_id, None)
            return answer, extras, None
        return None, None, SendResult(Outcome.RETRY_LATER, reason=f"not sent: {not_processed}")

    def _classify(
        self,
        answer: NotificationResult,
        extras: AnswerExtras | None,
        generation: int,
        item: SendItem,
    ) -> SendResult:
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
