"""Outcomes written while a batch is still sending, in small group commits.

Writing every outcome once the whole batch has sent would make a worker killed mid-batch
lose every answer it had, and the next attempt resend all of them. The writer commits what
arrived every ``max_delay`` or every ``max_rows`` verdicts, whichever comes first, and tells
each verdict's sender when it is committed: a sender keeps its request slot until then, so
the requests in flight *plus* the answers not yet recorded never exceed the sender's
concurrency, and a crash resends at most that many, however slow the store is. A commit that
fails (the store restarting) is retried with backoff, keeping its verdicts.

Each commit also reads the batch's send fence (tidings.store.fences): when a newer attempt of
the batch has started (Temporal retried it while this one still ran, cut off from Temporal),
``superseded`` is set and the attempt stops sending. Cancelled (its heartbeat told it so, or
the worker stops), the writer still commits what has arrived before it lets go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType

from activities.delivery.verdicts import AttemptVerdicts, Verdict
from tidings.observe.metrics import TOKEN_INVALIDATIONS, bounded_reason, count_pushes
from tidings.store.apps import stop_sends
from tidings.store.db import Database
from tidings.store.fences import AttemptFence, holds_fence
from tidings.store.ledger import Completion, complete_sends
from tidings.store.models import App
from tidings.store.targeting import invalidate_gone, quarantine
from tidings.store.types import utcnow
from tidings.store.webhooks import WebhookEvent, WebhookEventType, enqueue, subscribers

log = logging.getLogger(__name__)

GROUP_ROWS = 100
GROUP_DELAY_S = 0.05
# a commit that fails is retried this long before the attempt fails (the store restarting)
COMMIT_PATIENCE_S = 60.0
# cancelled, the writer commits what arrived for at most this long (the worker is stopping)
FLUSH_ON_CANCEL_S = 10.0


class OutcomeWriter:
    """Group commits of one attempt's verdicts (an async context: the last group is
    committed on exit). ``learnt`` gathers what the attempt learnt as verdicts arrive."""

    def __init__(
        self,
        db: Database,
        app: App,
        *,
        max_rows: int = GROUP_ROWS,
        max_delay_s: float = GROUP_DELAY_S,
        patience_s: float = COMMIT_PATIENCE_S,
        fence: AttemptFence | None = None,
    ) -> None:
        self._db = db
        self._app = app
        self._fence = fence
        # set once a commit found a newer attempt of the batch sending: stop sending
        self.superseded = asyncio.Event()
        self._max_rows = max_rows
        self._max_delay_s = max_delay_s
        self._patience_s = patience_s
        self._buffer: list[Verdict] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._stopped_providers: set[str] = set()
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.learnt = AttemptVerdicts()
        self.commits = 0

    def add(self, verdict: Verdict) -> asyncio.Future[None]:
        """Take a verdict into the next group; the future is done once that group has been
        committed (or the writer gave up on it: the attempt then fails)."""
        self.learnt.note(verdict)
        self._buffer.append(verdict)
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(committed)
        # the first verdict of a group starts its clock; a full group goes at once
        if len(self._buffer) == 1 or len(self._buffer) >= self._max_rows:
            self._wake.set()
        return committed

    async def __aenter__(self) -> OutcomeWriter:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing = True
        self._wake.set()
        assert self._task is not None
        if kind is None or not issubclass(kind, asyncio.CancelledError):
            await self._task
            return
        # cancelled: the answers that arrived are facts the next attempt must not resend, so
        # the commit under way finishes and the rest is committed, if the store takes it soon
        try:
            await asyncio.wait_for(asyncio.shield(self._task), FLUSH_ON_CANCEL_S)
        except Exception as failure:
            log.warning(
                "send outcomes not recorded on cancellation (%s): the next attempt resends them",
                type(failure).__name__,
            )
        finally:
            self._task.cancel()
            for committed in self._waiting:
                if not committed.done():
                    committed.set_result(None)

    async def write(self, completions: Sequence[Completion]) -> None:
        """Commit extra completions after the sends (in order, after every group)."""
        for completion in completions:
            # with its row's provider, for the metrics
            self.add(Verdict(completion, self.learnt.provider_of.get(completion.row_id)))
        await self._commit(self._take())

    async def _run(self) -> None:
        while True:
            if not self._buffer:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            if len(self._buffer) < self._max_rows and not self._closing:
                # let a group form: the first verdict waits at most max_delay
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._max_delay_s)
                self._wake.clear()
            await self._commit(self._take())

    def _take(self) -> tuple[list[Verdict], list[asyncio.Future[None]]]:
        group, self._buffer = self._buffer, []
        waiting, self._waiting = self._waiting, []
        return group, waiting

    async def _commit(self, taken: tuple[list[Verdict], list[asyncio.Future[None]]]) -> None:
        group, waiting = taken
        try:
            await self._commit_with_patience(group)
        finally:
            for committed in waiting:
                if not committed.done():
                    committed.set_result(None)

    async def _commit_with_patience(self, group: list[Verdict]) -> None:
        if not group:
            return
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._patience_s
        delay = 0.25
        while True:
            try:
                await self._commit_once(group)
                return
            except Exception as error:
                if loop.time() + delay > give_up:
                    raise
                log.warning(
                    "recording %d send outcomes failed (%s); retrying in %.1fs",
                    len(group),
                    type(error).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _commit_once(self, group: list[Verdict]) -> None:
        now = utcnow()
        faults = {
            v.provider: v.app_fault
            for v in group
            if v.provider and v.app_fault and v.provider not in self._stopped_providers
        }
        async with self._db.write() as session:
            # the webhook endpoints hear of these outcomes in this same commit
            found = await subscribers(session)
            await complete_sends(session, [v.completion for v in group], now, found)
            invalidated: list[WebhookEvent] = []
            for verdict in group:
                if verdict.gone is not None:
                    device_id, gone_at, reason = verdict.gone
                    if await invalidate_gone(session, device_id, gone_at, reason, now):
                        told = self._invalidated(verdict, device_id, "gone", reason, now)
                        invalidated.append(told)
                if verdict.suspect is not None and await quarantine(session, *verdict.suspect, now):
                    device_id, reason = verdict.suspect
                    told = self._invalidated(verdict, device_id, "suspect", reason, now)
                    invalidated.append(told)
            await enqueue(session, invalidated, now, found)
            for provider, reason in faults.items():
                await stop_sends(session, self._app, provider, reason, now)
            current = self._fence is None or await holds_fence(session, self._fence)
        self._stopped_providers.update(faults)
        if not current:
            self.superseded.set()
        self.commits += 1
        self._count(group)

    def _invalidated(
        self, verdict: Verdict, device_id: int, how: str, reason: str, now: datetime
    ) -> WebhookEvent:
        """``token.invalidated``: ``gone`` (the provider said so; never targeted again) or
        ``suspect`` (quarantined until the app registers it again)."""
        return WebhookEvent(
            WebhookEventType.TOKEN_INVALIDATED,
            f"{device_id}:{how}:{now.isoformat()}",
            self._app.id,
            now,
            {
                "device_id": device_id,
                "provider": verdict.provider,
                "state": "invalid" if how == "gone" else "quarantined",
                "how": how,
                "reason": reason,
            },
        )

    def _count(self, group: list[Verdict]) -> None:
        """Metrics only once the ledger holds what they count."""
        for verdict in group:
            if verdict.completion.closes:
                count_pushes(self._app.id, verdict.provider, verdict.completion.status.value)
            provider = verdict.provider or "none"
            if verdict.gone is not None:
                reason = bounded_reason(verdict.gone[2])
                TOKEN_INVALIDATIONS.labels(provider, "gone", reason).inc()
            if verdict.suspect is not None:
                reason = bounded_reason(verdict.suspect[1])
                TOKEN_INVALIDATIONS.labels(provider, "suspect", reason).inc()
