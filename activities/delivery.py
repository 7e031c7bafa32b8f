"""The push node's batch activity: resolve tokens, write the ledger, send, record outcomes.

One activity advances a whole group of profiles standing on the same push node (DESIGN.md
decision 2): one query for their tokens, concurrent HTTP/2 sends, one write for the outcomes.
Temporal is the only retry layer: when some sends must be retried, the activity records the
others and fails with ``next_retry_delay``; the next attempt finds the completed rows in the
ledger and sends only the rest. The batch's result is read back from the ledger, so it counts
what every attempt did.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contracts import DELIVER, PushBatch, PushBatchResult
from activities.expiry import hold_expired, send_deadlines
from activities.frequency_cap import capped_in_batch, hold_capped
from tidings.journeys.locales import choose_variant
from tidings.journeys.render import RenderError, render_message
from tidings.push import Outcome, PushMessage, SenderRegistry, SendItem, SendResult
from tidings.push.message import size_problem
from tidings.push.outcome import APNS_TOKEN_UPDATES, FCM_QUOTA_REASONS, FaultScope, fault_scope
from tidings.push.ratelimit import SendPacer
from tidings.push.registry import AppCredentials, AppSenders
from tidings.store.apps import (
    credentials_generation,
    open_credentials,
    provider_stop,
    stop_sends,
)
from tidings.store.db import Database
from tidings.store.ledger import (
    Completion,
    LedgerRow,
    PlannedSend,
    complete_sends,
    count_attempt,
    open_sends,
    read_outcomes,
    send_key,
    settle_orphans,
    tracking_id_for,
)
from tidings.store.models import App, DeliveryStatus, Provider
from tidings.store.secrets import SecretBox
from tidings.store.targeting import (
    Audience,
    invalidate_gone,
    quarantine,
    resolve_targets,
    stale_cutoff,
)
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

# Google: a QUOTA_EXCEEDED send waits at least a minute before its first retry.
QUOTA_MIN_DELAY = timedelta(seconds=60)
# Apple: a team's provider token may be updated once every 20 minutes at most; a push
# answered TooManyProviderTokenUpdates waits that long (the JWT is kept, never re-minted).
TOKEN_UPDATES_MIN_DELAY = timedelta(minutes=20)
FINAL_BY_OUTCOME = {
    Outcome.DELIVERED: DeliveryStatus.DELIVERED,
    Outcome.TOKEN_GONE: DeliveryStatus.TOKEN_GONE,
    Outcome.TOKEN_SUSPECT: DeliveryStatus.TOKEN_SUSPECT,
    Outcome.CONFIG_FAULT: DeliveryStatus.CONFIG_FAULT,
}
APP_STOPPED = "app stopped: "
# a configuration fault of one push (its payload or headers): the app is not stopped
PUSH_REFUSED = "push refused: "
FAILED_WITH_THE_PUSH = "failed with the refused push"
PROVIDER_NAMES = {Provider.APNS.value: "APNs", Provider.FCM.value: "FCM"}
EXPIRED_BEFORE_ITS_TURN = "expired while waiting for the app's send rate"


@dataclass(frozen=True)
class DeliveryPolicy:
    stale_after_days: int
    initial_backoff: timedelta
    max_backoff: timedelta
    heartbeat_every: timedelta
    # least wait after APNs 429 TooManyProviderTokenUpdates (settings: apns_token_updates_retry_s)
    token_updates_min_delay: timedelta = TOKEN_UPDATES_MIN_DELAY


@dataclass(frozen=True)
class _NotSent:
    """A pending send this attempt did not make, and the final status that says why."""

    status: DeliveryStatus
    reason: str


@dataclass
class _Send:
    """A planned send with what the provider call needs."""

    plan: PlannedSend
    token: str | None = None
    message: PushMessage | None = None


@dataclass
class _Attempt:
    """What one attempt learnt, to be written in one transaction."""

    completions: list[Completion] = field(default_factory=list)
    gone: list[tuple[int, datetime, str]] = field(default_factory=list)
    suspect: list[tuple[int, str]] = field(default_factory=list)
    # by provider: faults of the app's credentials or setup (its sends stop) ...
    faults: dict[str, str] = field(default_factory=dict)
    # ... and faults of this push (its other sends to that provider in this batch fail too)
    refused: dict[str, str] = field(default_factory=dict)
    retry_after: timedelta = timedelta(0)
    retry_reasons: Counter[str] = field(default_factory=Counter)


class DeliveryActivities:
    def __init__(
        self,
        db: Database,
        senders: SenderRegistry,
        secrets: SecretBox,
        policy: DeliveryPolicy,
    ) -> None:
        self._db = db
        self._senders = senders
        self._secrets = secrets
        self._policy = policy
        self._pacer = SendPacer(db)

    @activity.defn(name=DELIVER)
    async def deliver(self, batch: PushBatch) -> PushBatchResult:
        now = utcnow()
        # per profile, from when it reached the node (activities/expiry.py)
        deadlines = send_deadlines(batch, now, activity.info().attempt)
        expires_at = deadlines.expires_at
        async with self._db.read() as session:
            app = await session.get(App, batch.app_id)
            if app is None:
                raise ApplicationError(
                    f"app {batch.app_id!r} does not exist", type="UnknownApp", non_retryable=True
                )
            audience = await resolve_targets(
                session,
                batch.app_id,
                [p.profile_id for p in batch.profiles],
                fresh_since=stale_cutoff(now, self._policy.stale_after_days),
            )
        sends = self._plan(batch, app, audience)
        hold_expired(sends, deadlines.expired)
        # -- frequency cap (issue 5, activities/frequency_cap.py): capped profiles not sent --
        hold_capped(sends, await capped_in_batch(self._db, batch, now))
        # -- end of frequency cap --------------------------------------------------------------
        expired = expires_at is not None and now >= expires_at
        async with self._db.write() as session:
            rows = await open_sends(
                session,
                run_id=batch.run_id,
                workflow_id=batch.workflow_id,
                journey_id=batch.journey_id,
                node_id=batch.node_id,
                app_id=batch.app_id,
                expires_at=expires_at,
                planned=[send.plan for send in sends],
                now=now,
            )
            # A device targeted by an earlier attempt may have been invalidated or moved since.
            await settle_orphans(
                session,
                workflow_id=batch.workflow_id,
                node_id=batch.node_id,
                visits={p.profile_id: p.visit for p in batch.profiles},
                planned_keys=set(rows),
                now=now,
            )
            pending = [s for s in sends if rows[s.plan.send_key].status is DeliveryStatus.PENDING]
            pending, held = _hold_back(pending, rows, expired)
            await complete_sends(session, held, now)
            await count_attempt(session, [rows[s.plan.send_key].id for s in pending])

        attempt = _Attempt()
        if pending:
            async with self._heartbeating():
                results = await self._send_pending(app, pending, expires_at)
            attempt = _interpret(pending, rows, results, now, self._policy.token_updates_min_delay)
            await self._record(app, batch, attempt)

        retry = [c for c in attempt.completions if c.status is DeliveryStatus.PENDING]
        if retry:
            await self._retry_or_settle(retry, attempt, expires_at)
        return await self._summarise(audience, sends)

    def _plan(self, batch: PushBatch, app: App, audience: Audience) -> list[_Send]:
        """One ledger row per (profile visit, valid device); a profile with no device, or
        whose push cannot be rendered or is too large, gets one not-sent row that says why."""
        by_profile: dict[str, list[_Send]] = {}
        for target in audience.targets:
            by_profile.setdefault(target.profile_id, []).append(
                _Send(
                    PlannedSend(
                        send_key="",
                        tracking_id="",
                        profile_id=target.profile_id,
                        device_id=target.device_id,
                        provider=target.provider,
                        visit=0,
                    ),
                    token=target.token,
                )
            )
        sends: list[_Send] = []
        for visit in batch.profiles:
            profile = audience.profiles.get(visit.profile_id)
            devices = by_profile.get(visit.profile_id, [])
            message: PushMessage | None = None
            blocked: str | None = None
            if profile is None:
                blocked = "no such profile"
            elif not devices:
                blocked = "no valid device"
            else:
                message, blocked = _render(batch, profile)
            if not devices:
                devices = [_Send(PlannedSend("", "", visit.profile_id, None, None, 0))]
            for device in devices:
                reason = blocked or _provider_block(app, device.plan.provider)
                key = send_key(batch.workflow_id, batch.node_id, visit.visit, device.plan.device_id)
                device.plan = PlannedSend(
                    send_key=key,
                    tracking_id=tracking_id_for(key),
                    profile_id=visit.profile_id,
                    device_id=device.plan.device_id,
                    provider=device.plan.provider,
                    visit=visit.visit,
                    status=DeliveryStatus.NOT_SENT if reason else DeliveryStatus.PENDING,
                    reason=reason,
                )
                device.message = None if reason else message
                sends.append(device)
        return sends

    async def _send_pending(
        self, app: App, pending: Sequence[_Send], expires_at: datetime | None
    ) -> list[SendResult | _NotSent]:
        try:
            senders = await self._senders.get(
                app.id,
                credentials_generation(app, self._secrets),
                lambda: _open(app, self._secrets),
            )
        except Exception as error:
            # e.g. an env: or file: reference this worker cannot read: retried (another worker
            # may read it), never a reason to stop the app everywhere; the type only, as the
            # message of a validation error could quote the secret
            reason = f"credentials cannot be opened ({type(error).__name__})"
            log.error("app %s: %s", app.id, reason)
            return [SendResult(Outcome.RETRY_LATER, reason=reason) for _ in pending]
        return await self._send_all(app, senders, pending, expires_at)

    async def _send_all(
        self,
        app: App,
        senders: AppSenders,
        pending: Sequence[_Send],
        expires_at: datetime | None,
    ) -> list[SendResult | _NotSent]:
        """Send APNs and FCM concurrently; results come back in ``pending``'s order. Under a
        send rate limit, chunks go out as the app's shared bucket allows; a chunk whose turn
        comes after the expiry is not sent, and neither is one to a provider that answered an
        earlier chunk with a configuration fault (of the app: it is stopped; of this push:
        every send of it would be refused alike)."""
        unsent = _NotSent(DeliveryStatus.EXPIRED, EXPIRED_BEFORE_ITS_TURN)
        results: list[SendResult | _NotSent] = [unsent] * len(pending)
        faulted: dict[str, _NotSent] = {}

        async def send(indexes: Sequence[int]) -> None:
            go: list[int] = []
            for index in indexes:
                skipped = faulted.get(pending[index].plan.provider or "")
                if skipped is not None:
                    results[index] = skipped
                else:
                    go.append(index)
            for index, result in zip(
                go, await _send_range(senders, pending, go, expires_at), strict=True
            ):
                results[index] = result
                provider = pending[index].plan.provider or ""
                if result.outcome is Outcome.CONFIG_FAULT and provider not in faulted:
                    faulted[provider] = (
                        _NotSent(DeliveryStatus.CONFIG_FAULT, _after_refusal(result.describe))
                        if fault_scope(provider, result) is FaultScope.MESSAGE
                        else _NotSent(DeliveryStatus.NOT_SENT, f"{APP_STOPPED}{result.describe}")
                    )

        rate = app.send_rate_per_s
        if not rate:
            await send(range(len(pending)))
            return results
        chunks: list[asyncio.Task[None]] = []
        try:
            async with aclosing(self._pacer.paced(app.id, rate, len(pending))) as turns:
                async for start, end in turns:
                    if expires_at is not None and utcnow() >= expires_at:
                        break
                    chunks.append(asyncio.create_task(send(range(start, end))))
            await asyncio.gather(*chunks)
        finally:
            for chunk in chunks:
                chunk.cancel()
        return results

    async def _record(self, app: App, batch: PushBatch, attempt: _Attempt) -> None:
        now = utcnow()
        async with self._db.write() as session:
            await complete_sends(session, attempt.completions, now)
            for device_id, gone_at, reason in attempt.gone:
                await invalidate_gone(session, device_id, gone_at, reason, now)
            for device_id, reason in attempt.suspect:
                await quarantine(session, device_id, reason, now)
            for provider, reason in attempt.faults.items():
                await stop_sends(session, app, provider, reason, now)
        for provider, reason in attempt.faults.items():
            log.error(
                "app %s: %s configuration fault (%s); its %s sends stop until its credentials "
                "change or an admin resumes them (POST /v1/apps/%s/resume)",
                app.id,
                PROVIDER_NAMES.get(provider, provider),
                reason,
                PROVIDER_NAMES.get(provider, provider),
                app.id,
            )
        for provider, reason in attempt.refused.items():
            log.error(
                "app %s: %s refused push node %r of journey %s (%s): its sends to %s in this "
                "batch fail, not retried; the app's other pushes go on",
                app.id,
                PROVIDER_NAMES.get(provider, provider),
                batch.node_id,
                batch.journey_id,
                reason,
                PROVIDER_NAMES.get(provider, provider),
            )

    async def _retry_or_settle(
        self, retry: list[Completion], attempt: _Attempt, expires_at: datetime | None
    ) -> None:
        info = activity.info()
        maximum = info.retry_policy.maximum_attempts if info.retry_policy else 0
        delay = self._backoff(info.attempt, attempt.retry_after)
        reasons = ", ".join(f"{n} x {r}" for r, n in attempt.retry_reasons.most_common(3))
        if expires_at is not None and utcnow() + delay >= expires_at:
            await self._settle(retry, DeliveryStatus.EXPIRED, "expired while retrying")
            return
        if maximum and info.attempt >= maximum:
            await self._settle(
                retry, DeliveryStatus.FAILED, f"gave up after {info.attempt} attempts"
            )
            return
        raise ApplicationError(
            f"{len(retry)} sends to retry ({reasons})",
            type="SendsToRetry",
            next_retry_delay=delay,
        )

    def _backoff(self, attempt: int, floor: timedelta) -> timedelta:
        """Exponential backoff with jitter (Temporal's own retry has none), never shorter than
        what the provider asked for."""
        base = self._policy.initial_backoff * (2 ** max(0, attempt - 1))
        capped = min(base, self._policy.max_backoff)
        jittered = capped * random.uniform(0.5, 1.0)
        return max(timedelta(seconds=jittered.total_seconds()), floor)

    async def _settle(self, retry: list[Completion], status: DeliveryStatus, reason: str) -> None:
        async with self._db.write() as session:
            await complete_sends(
                session,
                [
                    Completion(c.row_id, status, f"{reason}; last answer: {c.reason}", None)
                    for c in retry
                ],
                utcnow(),
            )

    async def _summarise(self, audience: Audience, sends: Sequence[_Send]) -> PushBatchResult:
        """The batch as the ledger has it now: what this and every earlier attempt did."""
        async with self._db.read() as session:
            outcomes = await read_outcomes(session, [s.plan.send_key for s in sends])
        result = PushBatchResult()
        for target in audience.targets:
            result.targeted[target.profile_id] = result.targeted.get(target.profile_id, 0) + 1
        statuses: Counter[str] = Counter()
        stopped: dict[str, str] = {}
        refused: dict[str, str] = {}
        for send in sends:
            outcome = outcomes[send.plan.send_key]
            statuses[outcome.status.value] += 1
            reason = outcome.reason or ""
            if outcome.status is DeliveryStatus.DELIVERED:
                profile_id = send.plan.profile_id
                result.delivered[profile_id] = result.delivered.get(profile_id, 0) + 1
            elif outcome.status is DeliveryStatus.TOKEN_GONE:
                result.invalidated += 1
            elif outcome.status is DeliveryStatus.TOKEN_SUSPECT:
                result.quarantined += 1
            elif outcome.status is DeliveryStatus.CONFIG_FAULT and outcome.provider:
                if reason.startswith(PUSH_REFUSED):
                    refused.setdefault(outcome.provider, reason)
                elif not reason.startswith(FAILED_WITH_THE_PUSH):  # the refused one says
                    stopped.setdefault(outcome.provider, reason or "configuration fault")
            elif (
                outcome.status is DeliveryStatus.NOT_SENT
                and outcome.provider
                and (outcome.reason or "").startswith(APP_STOPPED)
            ):
                stopped.setdefault(outcome.provider, (outcome.reason or "")[len(APP_STOPPED) :])
        result.statuses = dict(statuses)
        # the run reports why sends failed: the app stopped, or this push refused (``stopped``
        # is the one field the workflows carry to the run's report)
        reports = stopped | {p: r for p, r in refused.items() if p not in stopped}
        result.stopped = "; ".join(f"{p}: {r}" for p, r in sorted(reports.items())) or None
        return result

    @asynccontextmanager
    async def _heartbeating(self) -> AsyncIterator[None]:
        if activity.info().is_local:
            # a triggered entry's send: local activities cannot heartbeat (their worker
            # keeps the workflow task alive instead)
            yield
            return

        async def beat() -> None:
            while True:
                activity.heartbeat()
                await asyncio.sleep(self._policy.heartbeat_every.total_seconds())

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()


def _render(batch: PushBatch, profile: dict[str, Any]) -> tuple[PushMessage | None, str | None]:
    """The profile's push (its locale's variant), or why it cannot be sent."""
    locale = profile.get("locale")
    _, content = choose_variant(
        batch.content, batch.locales, locale if isinstance(locale, str) else None
    )
    try:
        message = render_message(content, batch.ttl_s, profile)
    except RenderError as error:
        return None, f"template error: {error}"
    problem = size_problem(message)
    if problem is not None:
        return None, problem
    return message, None


def _provider_block(app: App, provider: str | None) -> str | None:
    if provider not in PROVIDER_NAMES:
        return None
    stop = provider_stop(app, provider)
    if stop is not None:
        return f"{APP_STOPPED}{stop.reason}"
    if not (app.apns_secret if provider == Provider.APNS.value else app.fcm_secret):
        return f"app has no {PROVIDER_NAMES[provider]} credentials"
    return None


def _after_refusal(reason: str) -> str:
    return f"{FAILED_WITH_THE_PUSH} ({PUSH_REFUSED}{reason})"


def _hold_back(
    pending: list[_Send], rows: dict[str, LedgerRow], expired: bool
) -> tuple[list[_Send], list[Completion]]:
    """Rows an earlier attempt left pending that must not go out now: the push expired, or
    this attempt's plan holds them back (the app was stopped meanwhile, a rule applies)."""
    go: list[_Send] = []
    held: list[Completion] = []
    for send in pending:
        row_id = rows[send.plan.send_key].id
        if send.plan.status is not DeliveryStatus.PENDING:
            held.append(Completion(row_id, send.plan.status, send.plan.reason, None))
        elif expired:
            held.append(Completion(row_id, DeliveryStatus.EXPIRED, "expired", None))
        else:
            go.append(send)
    return go, held


def _interpret(
    pending: Sequence[_Send],
    rows: dict[str, LedgerRow],
    results: Sequence[SendResult | _NotSent],
    now: datetime,
    token_updates_min_delay: timedelta = TOKEN_UPDATES_MIN_DELAY,
) -> _Attempt:
    attempt = _Attempt()
    for send, result in zip(pending, results, strict=True):
        row = rows[send.plan.send_key]
        provider = send.plan.provider
        if isinstance(result, _NotSent):
            attempt.completions.append(Completion(row.id, result.status, result.reason, None))
            continue
        device_id = send.plan.device_id
        status = FINAL_BY_OUTCOME.get(result.outcome, DeliveryStatus.PENDING)
        reason = result.describe
        if result.outcome is Outcome.TOKEN_GONE and device_id is not None:
            # FCM says nothing of when; the attempt's start is earlier than the answer, so a
            # registration during the send still wins
            attempt.gone.append((device_id, result.gone_at or now, result.describe))
        elif result.outcome is Outcome.TOKEN_SUSPECT and device_id is not None:
            attempt.suspect.append((device_id, result.describe))
        elif result.outcome is Outcome.CONFIG_FAULT and provider:
            if fault_scope(provider, result) is FaultScope.MESSAGE:
                attempt.refused.setdefault(provider, result.describe)
                reason = PUSH_REFUSED + result.describe
            else:
                attempt.faults.setdefault(provider, result.describe)
        elif status is DeliveryStatus.PENDING:
            attempt.retry_reasons[result.describe] += 1
            delay = timedelta(seconds=result.retry_after_s or 0)
            if result.reason in FCM_QUOTA_REASONS:
                delay = max(delay, QUOTA_MIN_DELAY)
            if result.reason == APNS_TOKEN_UPDATES:
                delay = max(delay, token_updates_min_delay)
            attempt.retry_after = max(attempt.retry_after, delay)
        attempt.completions.append(Completion(row.id, status, reason, result.message_id))
    if attempt.refused:
        _fail_with_the_refused_push(attempt, pending, rows)
    return attempt


def _fail_with_the_refused_push(
    attempt: _Attempt, pending: Sequence[_Send], rows: dict[str, LedgerRow]
) -> None:
    """A provider refused this push itself (its payload, its headers): its sends to that
    provider that wait for a retry would be refused alike, so they fail now, not retried."""
    provider_of = {rows[send.plan.send_key].id: send.plan.provider or "" for send in pending}
    retry_reasons: Counter[str] = Counter()
    for index, completion in enumerate(attempt.completions):
        refusal = attempt.refused.get(provider_of.get(completion.row_id, ""))
        if completion.status is not DeliveryStatus.PENDING:
            continue
        if refusal is None:
            retry_reasons[completion.reason or ""] += 1
            continue
        attempt.completions[index] = Completion(
            completion.row_id,
            DeliveryStatus.CONFIG_FAULT,
            f"{_after_refusal(refusal)}; its own answer: {completion.reason}",
            None,
        )
    attempt.retry_reasons = retry_reasons


async def _open(app: App, secrets: SecretBox) -> AppCredentials:
    return open_credentials(app, secrets)


async def _send_range(
    senders: AppSenders,
    pending: Sequence[_Send],
    indexes: Sequence[int],
    expires_at: datetime | None,
) -> list[SendResult]:
    """Send ``pending[indexes]``, APNs and FCM concurrently; results in ``indexes`` order."""
    groups: dict[str, list[int]] = {}
    for index in indexes:
        groups.setdefault(pending[index].plan.provider or "", []).append(index)
    results: dict[int, SendResult] = {}

    async def run(provider: str, group: list[int]) -> None:
        sender = senders.apns if provider == Provider.APNS.value else senders.fcm
        if sender is None:
            for index in group:
                results[index] = SendResult(Outcome.CONFIG_FAULT, reason="no credentials")
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
        for index, result in zip(group, await sender.send_batch(items), strict=True):
            results[index] = result

    await asyncio.gather(*(run(provider, group) for provider, group in groups.items()))
    return [results[index] for index in indexes]
