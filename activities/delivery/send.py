"""Sending a batch's open rows: each device's push through its provider's sender, paced by
the app's send rate, every result handed on as soon as it is known."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing
from datetime import datetime

from activities.delivery.pacing import SendPacer
from activities.delivery.plan import APP_STOPPED, PlannedDelivery
from activities.delivery.verdicts import NotSent, refused_with
from tidings.observe.tracing import provider_send_span
from tidings.push import AppSenders, Outcome, PushMessage, SendItem, SendResult
from tidings.push.outcome import FaultScope, fault_scope
from tidings.store.models import DeliveryStatus, SendCause
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

EXPIRED_BEFORE_ITS_TURN = "expired while waiting for the app's send rate"
# Told each result as it arrives: the index of its send in the batch, and the result; what
# it returns is awaited before the request's slot is freed (see tidings.push.sender).
Sink = Callable[[int, SendResult | NotSent], Awaitable[None] | None]


async def send_paced(
    senders: AppSenders,
    pending: Sequence[PlannedDelivery],
    expires_at: datetime | None,
    rate_per_s: float | None,
    pacer: SendPacer,
    app_id: str,
    sink: Sink,
) -> None:
    """Send every pending push, providers concurrently, telling ``sink`` each result. Under a
    send rate limit, chunks go out as the app's shared bucket allows; a chunk whose turn
    comes after the expiry is not sent, and neither is one to a provider that answered an
    earlier chunk with a configuration fault (of the app: it is stopped; of this push: every
    send of it would be refused alike)."""
    faulted: dict[str, NotSent] = {}
    told: set[int] = set()

    def tell(index: int, result: SendResult | NotSent) -> Awaitable[None] | None:
        told.add(index)
        recorded = sink(index, result)
        provider = pending[index].plan.provider or ""
        if (
            isinstance(result, SendResult)
            and result.outcome is Outcome.CONFIG_FAULT
            and provider not in faulted
        ):
            faulted[provider] = (
                NotSent(
                    DeliveryStatus.CONFIG_FAULT,
                    refused_with(result.describe),
                    SendCause.WITH_REFUSED_PUSH,
                )
                if fault_scope(provider, result) is FaultScope.MESSAGE
                else NotSent(
                    DeliveryStatus.NOT_SENT,
                    f"{APP_STOPPED}{result.describe}",
                    SendCause.APP_STOPPED,
                )
            )
        return recorded

    async def send(indexes: Sequence[int]) -> None:
        go: list[int] = []
        for index in indexes:
            skipped = faulted.get(pending[index].plan.provider or "")
            if skipped is not None:
                tell(index, skipped)
            else:
                go.append(index)
        await send_by_provider(senders, pending, go, expires_at, tell)

    if not rate_per_s:
        await send(range(len(pending)))
        return
    chunks: list[asyncio.Task[None]] = []
    try:
        async with aclosing(pacer.paced(app_id, rate_per_s, len(pending))) as turns:
            async for start, end in turns:
                if expires_at is not None and utcnow() >= expires_at:
                    break
                chunks.append(asyncio.create_task(send(range(start, end))))
        await asyncio.gather(*chunks)
    finally:
        for chunk in chunks:
            chunk.cancel()
    late = NotSent(DeliveryStatus.EXPIRED, EXPIRED_BEFORE_ITS_TURN, SendCause.RATE_TURN)
    for index in range(len(pending)):
        if index not in told:
            sink(index, late)


async def send_by_provider(
    senders: AppSenders,
    pending: Sequence[PlannedDelivery],
    indexes: Sequence[int],
    expires_at: datetime | None,
    sink: Sink,
) -> None:
    """Send ``pending[indexes]``, each provider's share through its own sender, all
    concurrently."""
    groups: dict[str, list[int]] = {}
    for index in indexes:
        groups.setdefault(pending[index].plan.provider or "", []).append(index)
    by_provider = senders.by_provider

    async def run(provider: str, group: list[int]) -> None:
        sender = by_provider.get(provider)
        if sender is None:
            for index in group:
                sink(index, SendResult(Outcome.CONFIG_FAULT, reason="no credentials"))
            return
        items = [
            SendItem(
                token=pending[i].token or "",
                tracking_id=pending[i].plan.tracking_id,
                message=pending[i].message or PushMessage(),
                expires_at=expires_at,
            )
            for i in group
        ]
        with provider_send_span(provider, len(items)):
            await sender.send_batch(items, on_result=lambda i, result: sink(group[i], result))

    await asyncio.gather(*(run(provider, group) for provider, group in groups.items()))
