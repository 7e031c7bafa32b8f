"""Sending a test send: the push its request recorded, to each of its devices, through the
worker's senders (the same provider clients and credentials as a run's pushes).

A test send is for someone looking at a phone: a transient failure is reported, never
retried for long (the send ends ``failed`` with the provider's reason). A token the provider
reports gone is invalidated and a suspect one quarantined, exactly as delivery does. Nothing
is written to the send ledger, so runs, reports, frequency caps and push metrics never see a
test send. A retried attempt sends only the devices still open; a push sent again after a
crash carries the same tracking (collapse) id, so the device shows one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlmodel import col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import TestSendFailure, TestSendRequest, TestSendSummary
from activities.declarations import GIVE_UP_TEST, SEND_TEST, TestSendActivity
from activities.delivery.plan import provider_block
from activities.delivery.verdicts import judge
from tidings.observe.tracing import provider_send_span
from tidings.push import AppSenders, Outcome, PushMessage, SenderRegistry, SendItem, SendResult
from tidings.push.credentials import AppCredentials
from tidings.store.apps import credentials_generation, open_credentials
from tidings.store.db import Database
from tidings.store.models import App, DeliveryStatus, Device, DeviceState, TestSend
from tidings.store.secrets import SecretBox
from tidings.store.targeting import invalidate_gone, quarantine
from tidings.store.test_sends import complete, open_devices
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

# a file: reference on a hung mount must not hold the worker's event loop
OPEN_CREDENTIALS_TIMEOUT_S = 5.0
# what a test send's device ends as, by the ledger status its answer would give a run's push
STATUS_OF = {
    DeliveryStatus.DELIVERED: "sent",
    DeliveryStatus.TOKEN_GONE: "token_gone",
    DeliveryStatus.TOKEN_SUSPECT: "token_suspect",
    DeliveryStatus.UNKNOWN: "unknown",
}

Outcomes = dict[int, tuple[str, str | None, str | None]]


class TestSendActivities(TestSendActivity):
    __test__ = False  # not a pytest class

    def __init__(self, db: Database, senders: SenderRegistry, secrets: SecretBox) -> None:
        self._db = db
        self._senders = senders
        self._secrets = secrets

    @activity.defn(name=SEND_TEST)
    async def send(self, request: TestSendRequest) -> TestSendSummary:
        async with self._db.read() as session:
            row = await session.get(TestSend, request.test_send_id)
            if row is None:
                raise ApplicationError(
                    f"no test send {request.test_send_id!r}", type="UnknownTestSend"
                )
            app = await session.get(App, row.app_id)
            wanted = open_devices(row)
            ids = [int(d["device_id"]) for d in wanted]
            found = await session.exec(select(Device).where(col(Device.id).in_(ids)))
            devices = {int(d.id or 0): d for d in found.all()}
        message = PushMessage.model_validate(row.message)
        outcomes: Outcomes = {}
        go: list[tuple[dict[str, Any], Device]] = []
        for entry in wanted:
            device = devices.get(int(entry["device_id"]))
            blocked = _blocked(app, device, entry)
            if blocked is not None:
                outcomes[int(entry["device_id"])] = ("not_sent", blocked, None)
            elif device is not None:
                go.append((entry, device))
        if go and app is not None:
            outcomes |= await self._send(app, message, go)
        async with self._db.write() as session:
            done = await complete(session, request.test_send_id, outcomes)
        return _summary(done)

    @activity.defn(name=GIVE_UP_TEST)
    async def give_up(self, failure: TestSendFailure) -> TestSendSummary:
        async with self._db.write() as session:
            row = await session.get(TestSend, failure.test_send_id)
            if row is None:
                return TestSendSummary(status="failed")
            reason = f"not sent: {failure.reason}"
            outcomes: Outcomes = {
                int(d["device_id"]): ("failed", reason, None) for d in open_devices(row)
            }
            done = await complete(session, failure.test_send_id, outcomes, error=failure.reason)
        return _summary(done)

    async def _send(
        self, app: App, message: PushMessage, go: Sequence[tuple[dict[str, Any], Device]]
    ) -> Outcomes:
        now = utcnow()
        try:
            senders = await self._open_senders(app)
        except Exception as error:
            # the type only: the message of a validation error could quote the secret
            reason = f"credentials cannot be opened ({type(error).__name__})"
            log.error("app %s: test send: %s", app.id, reason)
            return {int(device.id or 0): ("failed", reason, None) for _, device in go}
        expires_at = now + timedelta(seconds=message.ttl_s) if message.ttl_s else None
        groups: dict[str, list[tuple[dict[str, Any], Device]]] = {}
        for entry, device in go:
            groups.setdefault(device.provider, []).append((entry, device))
        results: list[tuple[Device, SendResult]] = []

        async def run(provider: str, group: list[tuple[dict[str, Any], Device]]) -> None:
            sender = senders.by_provider.get(provider)
            if sender is None:
                missing = SendResult(Outcome.CONFIG_FAULT, reason="no credentials")
                results.extend((device, missing) for _, device in group)
                return
            items = [
                SendItem(device.token, entry["tracking_id"], message, expires_at)
                for entry, device in group
            ]
            with provider_send_span(provider, len(items)):
                answers = await sender.send_batch(items)
            for (_, device), answer in zip(group, answers, strict=True):
                results.append((device, answer))

        await asyncio.gather(*(run(p, g) for p, g in groups.items()))
        return await self._judge(results, now)

    async def _judge(self, results: list[tuple[Device, SendResult]], now: Any) -> Outcomes:
        """Each answer as delivery reads it; gone tokens invalidated, suspect ones
        quarantined."""
        outcomes: Outcomes = {}
        async with self._db.write() as session:
            for device, result in results:
                device_id = int(device.id or 0)
                verdict = judge(0, device_id, device.provider, result, now)
                completion = verdict.completion
                status = STATUS_OF.get(completion.status, "failed")
                reason = completion.reason
                if status == "sent":
                    reason = None  # accepted: the provider's message id says the rest
                elif completion.status is DeliveryStatus.PENDING:
                    reason = f"{reason} (a test send is not retried)"
                if verdict.gone is not None:
                    _, gone_at, why = verdict.gone
                    await invalidate_gone(session, device_id, gone_at, why, now)
                if verdict.suspect is not None:
                    await quarantine(session, device_id, verdict.suspect[1], now)
                outcomes[device_id] = (status, reason, completion.provider_message_id)
        return outcomes

    async def _open_senders(self, app: App) -> AppSenders:
        generation = await asyncio.wait_for(
            asyncio.to_thread(credentials_generation, app, self._secrets),
            OPEN_CREDENTIALS_TIMEOUT_S,
        )

        async def load() -> AppCredentials:
            return await asyncio.wait_for(
                asyncio.to_thread(open_credentials, app, self._secrets),
                OPEN_CREDENTIALS_TIMEOUT_S,
            )

        return await self._senders.get(app.id, generation, load)


def _blocked(app: App | None, device: Device | None, entry: dict[str, Any]) -> str | None:
    """Why this device gets no push now (it changed since the test send was asked for)."""
    if app is None:
        return f"app {entry.get('app_id')!r} no longer exists"
    if device is None or device.app_id != app.id:
        return "the device was deleted"
    if device.state != DeviceState.VALID.value:
        return f"the device is {device.state}: {device.state_reason or 'no reason given'}"
    block = provider_block(app, device.provider)
    return block[0] if block is not None else None


def _summary(row: TestSend | None) -> TestSendSummary:
    if row is None:
        return TestSendSummary(status="failed")
    counted = Counter(str(d.get("status")) for d in row.devices)
    return TestSendSummary(status=row.status.value, outcomes=dict(counted))
