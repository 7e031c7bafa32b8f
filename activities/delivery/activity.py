"""The push node's batch activity: plan the ledger rows, send, record outcomes as they come.

One activity advances a whole group of profiles standing on the same push node (DESIGN.md
decision 2): one query for their tokens, concurrent HTTP/2 sends, outcomes committed in
small groups while the batch sends. Temporal is the only retry layer between attempts: when
some sends must be retried, the activity fails with ``next_retry_delay``; the next attempt
finds the closed rows in the ledger and sends only the open ones. Transient failures are
retried until the push expires or its node's retry horizon passes, whichever comes first.
The batch's result is read back from the ledger, so it counts what every attempt did.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.contracts import PushBatch, PushBatchResult
from activities.declarations import DELIVER, DeliveryActivity
from activities.delivery.caps import capped_in_batch, hold_capped
from activities.delivery.commits import OutcomeWriter
from activities.delivery.expiry import hold_expired, send_deadlines
from activities.delivery.fencing import FenceHeld, holding_fence, once_fence_taken
from activities.delivery.pacing import SendPacer
from activities.delivery.plan import (
    APP_STOPPED,
    PROVIDER_NAMES,
    PlannedDelivery,
    SendLimits,
    hold_back,
    horizon_deadline,
    plan_sends,
)
from activities.delivery.send import send_paced
from activities.delivery.verdicts import (
    TOKEN_UPDATES_MIN_DELAY,
    AttemptVerdicts,
    NotSent,
    judge,
)
from tidings.observe.context import bound
from tidings.observe.metrics import count_pushes
from tidings.push import AppSenders, Outcome, SenderRegistry, SendResult
from tidings.push.credentials import AppCredentials
from tidings.push.sender import SENDS_HALTED, urgent_sends
from tidings.store.apps import credentials_generation, open_credentials
from tidings.store.db import Database
from tidings.store.fences import AttemptFence, take_fence
from tidings.store.ledger import (
    Completion,
    LedgerRow,
    complete_sends,
    count_attempt,
    open_sends,
    read_outcomes,
    settle_orphans,
)
from tidings.store.models import App, DeliveryStatus, SendCause
from tidings.store.secrets import SecretBox
from tidings.store.targeting import Audience, resolve_targets, stale_cutoff
from tidings.store.types import utcnow

log = logging.getLogger(__name__)

DEFAULT_RETRY_HORIZON = timedelta(hours=1)
# A cancelled attempt (timed out, its worker stopping) sends nothing more but waits this long
# for the answers to the requests it has in flight, and records them: sent without a record,
# they would be sent again by the next attempt. Longer than a send's own timeout.
SETTLE_IN_FLIGHT_S = 15.0


@dataclass(frozen=True)
class DeliveryPolicy:
    stale_after_days: int
    initial_backoff: timedelta
    max_backoff: timedelta
    heartbeat_every: timedelta
    # least wait after APNs 429 TooManyProviderTokenUpdates (settings: apns_token_updates_retry_s)
    token_updates_min_delay: timedelta = TOKEN_UPDATES_MIN_DELAY
    # how long transient failures are retried when the push node names no horizon of its own
    retry_horizon: timedelta = DEFAULT_RETRY_HORIZON


class DeliveryActivities(DeliveryActivity):
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
        # heartbeats from start to end: a store that is slow to plan or record (a busy
        # SQLite, a restarting PostgreSQL) must never look like a dead worker to Temporal, or
        # it would start a second attempt that sends the same open rows at the same time
        ids = bound(app_id=batch.app_id, run_id=batch.run_id, workflow_id=batch.workflow_id)
        # a local activity is a triggered entry's send: it takes the senders' urgent lane,
        # so a broadcast sending meanwhile does not hold it back
        lane = urgent_sends() if activity.info().is_local else nullcontext()
        with ids, lane:
            async with self._heartbeating():
                fence = _attempt_fence()
                async with holding_fence(self._db, fence):
                    return await once_fence_taken(lambda: self._deliver(batch, fence), fence)

    async def _deliver(self, batch: PushBatch, fence: AttemptFence) -> PushBatchResult:
        now = utcnow()
        # per profile, from when it reached the node (expiry.py)
        deadlines = send_deadlines(batch, now, activity.info().attempt)
        expires_at = deadlines.expires_at
        give_up_at = horizon_deadline(batch, self._policy.retry_horizon.total_seconds())
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
        sends = plan_sends(batch, app, audience)
        hold_expired(sends, deadlines.expired)
        hold_capped(sends, await capped_in_batch(self._db, batch, now))
        limits = SendLimits(
            expired=expires_at is not None and now >= expires_at,
            horizon_passed=now >= give_up_at,
            horizon=_duration(give_up_at - batch.reached_at),
        )
        async with self._db.write() as session:
            # taken in the transaction that opens the rows it guards
            if not await take_fence(session, fence, now):
                raise FenceHeld
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
            pending = [s for s in sends if rows[s.plan.send_key].open]
            pending, held = hold_back(pending, rows, limits)
            await complete_sends(session, held, now)
            await count_attempt(session, [rows[s.plan.send_key].id for s in pending])
        provider_of = {rows[s.plan.send_key].id: s.plan.provider for s in sends}
        _count_closed(app.id, provider_of, held)
        if activity.info().attempt == 1:
            # rows written closed (no device, a push that cannot be rendered): counted by
            # the attempt that wrote them
            for send in sends:
                row = rows[send.plan.send_key]
                if send.plan.status is not DeliveryStatus.PENDING and not row.open:
                    count_pushes(app.id, send.plan.provider, row.status.value)

        if pending:
            learnt = await self._send(app, pending, rows, expires_at, now, fence)
            if learnt.open_rows:
                await self._retry_or_close(app.id, learnt, expires_at, give_up_at, limits.horizon)
        return await self._summarise(audience, sends)

    async def _send(
        self,
        app: App,
        pending: Sequence[PlannedDelivery],
        rows: dict[str, LedgerRow],
        expires_at: datetime | None,
        now: datetime,
        fence: AttemptFence,
    ) -> AttemptVerdicts:
        """Send the pending rows, committing their outcomes as they arrive; what the attempt
        learnt (the rows left open to be retried, with their last answers). Stops sending,
        and fails, once a newer attempt of the batch has started."""
        row_ids = [rows[send.plan.send_key].id for send in pending]
        token_updates = self._policy.token_updates_min_delay

        def record(index: int, result: SendResult | NotSent) -> Awaitable[None]:
            plan = pending[index].plan
            verdict = judge(
                row_ids[index], plan.device_id, plan.provider, result, now, token_updates
            )
            return writer.add(verdict)

        async with OutcomeWriter(self._db, app, fence=fence) as writer:
            senders = await self._open_senders(app)
            if isinstance(senders, SendResult):
                for index in range(len(pending)):
                    record(index, senders)
            else:
                halt = asyncio.Event()
                # the send tasks see the halt through their context
                halting = SENDS_HALTED.set(halt)
                sending = asyncio.create_task(
                    send_paced(
                        senders,
                        pending,
                        expires_at,
                        app.send_rate_per_s,
                        self._pacer,
                        app.id,
                        record,
                    )
                )
                SENDS_HALTED.reset(halting)
                await _until_sent_or_superseded(sending, writer.superseded, halt)
        if writer.superseded.is_set():
            raise _superseded(fence)
        learnt = writer.learnt
        await writer.write(learnt.fail_with_the_refused_push())
        self._log_faults(app, learnt.app_faults, learnt.refused)
        return learnt

    async def _open_senders(self, app: App) -> AppSenders | SendResult:
        try:
            generation = await asyncio.wait_for(
                asyncio.to_thread(credentials_generation, app, self._secrets),
                OPEN_CREDENTIALS_TIMEOUT_S,
            )
            return await self._senders.get(app.id, generation, lambda: _open(app, self._secrets))
        except Exception as error:
            # e.g. an env: or file: reference this worker cannot read: retried (another worker
            # may read it), never a reason to stop the app everywhere; the type only, as the
            # message of a validation error could quote the secret
            reason = f"credentials cannot be opened ({type(error).__name__})"
            log.error("app %s: %s", app.id, reason)
            return SendResult(Outcome.RETRY_LATER, reason=reason)

    def _log_faults(self, app: App, faults: dict[str, str], refused: dict[str, str]) -> None:
        for provider, reason in faults.items():
            name = PROVIDER_NAMES.get(provider, provider)
            log.error(
                "app %s: %s configuration fault (%s); its %s sends stop until its credentials "
                "change or an admin resumes them (POST /v1/apps/%s/resume)",
                app.id,
                name,
                reason,
                name,
                app.id,
            )
        for provider, reason in refused.items():
            name = PROVIDER_NAMES.get(provider, provider)
            log.error(
                "app %s: %s refused a push (%s): its other sends to %s in this batch fail, "
                "not retried; the app's other pushes go on",
                app.id,
                name,
                reason,
                name,
            )

    async def _retry_or_close(
        self,
        app_id: str,
        learnt: AttemptVerdicts,
        expires_at: datetime | None,
        give_up_at: datetime,
        horizon: str,
    ) -> None:
        """Retry the open rows after a backoff, or close them if that would come after the
        push's expiry or its retry horizon."""
        info = activity.info()
        open_rows = list(learnt.open_rows.values())
        delay = self._backoff(info.attempt, learnt.retry_after)
        at = utcnow() + delay
        maximum = info.retry_policy.maximum_attempts if info.retry_policy else 0
        if expires_at is not None and at >= expires_at:
            closed = await self._close(
                open_rows, DeliveryStatus.EXPIRED, "expired while retrying", SendCause.EXPIRED
            )
            _count_closed(app_id, learnt.provider_of, closed)
        elif at >= give_up_at:
            reason = f"not delivered within its retry horizon ({horizon})"
            closed = await self._close(
                open_rows, DeliveryStatus.FAILED, reason, SendCause.RETRY_HORIZON
            )
            _count_closed(app_id, learnt.provider_of, closed)
        elif maximum and info.attempt >= maximum:
            # an activity scheduled with a bounded retry policy (before retry horizons)
            reason = f"gave up after {info.attempt} attempts"
            closed = await self._close(
                open_rows, DeliveryStatus.FAILED, reason, SendCause.RETRY_HORIZON
            )
            _count_closed(app_id, learnt.provider_of, closed)
        else:
            reasons = ", ".join(f"{n} x {r}" for r, n in learnt.retry_reasons.most_common(3))
            # benign: an expected retry, logged quietly and not counted as a failure
            raise ApplicationError(
                f"{len(open_rows)} sends to retry ({reasons})",
                type="SendsToRetry",
                next_retry_delay=delay,
                category=ApplicationErrorCategory.BENIGN,
            )

    def _backoff(self, attempt: int, floor: timedelta) -> timedelta:
        """Exponential backoff with jitter (Temporal's own retry has none), never shorter than
        what the provider asked for."""
        base = self._policy.initial_backoff * (2 ** min(max(0, attempt - 1), 30))
        capped = min(base, self._policy.max_backoff)
        jittered = capped * random.uniform(0.5, 1.0)
        return max(timedelta(seconds=jittered.total_seconds()), floor)

    async def _close(
        self, open_rows: list[Completion], status: DeliveryStatus, reason: str, cause: SendCause
    ) -> list[Completion]:
        """Close rows whose retries are over; a row whose last answer was lost stays
        ``unknown`` (it may have been delivered)."""
        closing = [
            Completion(
                c.row_id,
                DeliveryStatus.UNKNOWN if c.status is DeliveryStatus.UNKNOWN else status,
                f"{reason}; last answer: {c.reason}",
                None,
                cause,
                close=True,
            )
            for c in open_rows
        ]
        async with self._db.write() as session:
            await complete_sends(session, closing, utcnow())
        return closing

    async def _summarise(
        self, audience: Audience, sends: Sequence[PlannedDelivery]
    ) -> PushBatchResult:
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
            elif outcome.provider and outcome.cause is SendCause.PUSH_REFUSED:
                refused.setdefault(outcome.provider, reason)
            elif outcome.provider and outcome.cause is SendCause.APP_STOPPED:
                stop = reason.removeprefix(APP_STOPPED)
                stopped.setdefault(outcome.provider, stop or "configuration fault")
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


def _attempt_fence() -> AttemptFence:
    info = activity.info()
    # a delivery batch is always a workflow's activity: it has a run id
    return AttemptFence(
        info.workflow_run_id or info.workflow_id or "", info.activity_id, info.attempt
    )


def _superseded(fence: AttemptFence) -> ApplicationError:
    # another execution owns the batch now: what this one returns is of no use to anyone
    return ApplicationError(
        f"attempt {fence.attempt} of this batch stopped: another execution is sending it",
        type="AttemptSuperseded",
        category=ApplicationErrorCategory.BENIGN,
    )


async def _until_sent_or_superseded(
    sending: asyncio.Task[None], superseded: asyncio.Event, halt: asyncio.Event
) -> None:
    """Wait for the sends. If another execution took the batch over first (this one's fence
    went stale), stop them: the requests in flight are abandoned, at most the sender's
    concurrency, resent by the other. If this execution is cancelled, send nothing more but
    let the requests in flight be answered and recorded first."""
    stop = asyncio.create_task(superseded.wait())
    try:
        await asyncio.wait({sending, stop}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        halt.set()
        await asyncio.wait({sending}, timeout=SETTLE_IN_FLIGHT_S)
        raise
    finally:
        stop.cancel()
        if not sending.done():
            sending.cancel()
        await asyncio.gather(sending, stop, return_exceptions=True)
    if not superseded.is_set():
        sending.result()


def _count_closed(
    app_id: str, provider_of: dict[int, str | None] | dict[int, str], closed: list[Completion]
) -> None:
    for completion in closed:
        count_pushes(app_id, provider_of.get(completion.row_id), completion.status.value)


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds:
        return f"{seconds // 60}m"
    return f"{seconds}s"


# a file: reference on a hung mount must not hold the worker's event loop (heartbeats, the
# other batches): credentials are opened on a thread, within this long
OPEN_CREDENTIALS_TIMEOUT_S = 5.0


async def _open(app: App, secrets: SecretBox) -> AppCredentials:
    return await asyncio.wait_for(
        asyncio.to_thread(open_credentials, app, secrets), OPEN_CREDENTIALS_TIMEOUT_S
    )
