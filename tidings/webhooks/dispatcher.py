"""The dispatcher beside each worker: sends the webhook outbox (tidings.store.webhooks).

A round claims a bounded batch of due rows of endpoints that are not paused, leasing them
(``next_attempt_at`` moves past the request timeout, so another dispatcher, in this worker
or another, skips them, and a dispatcher that dies mid-round leaves them due again when the
lease ends), POSTs each signed event (tidings.webhooks.signing) with httpx through the
egress guard (tidings.egress: the endpoint's host is checked again as each connection
opens), and records the outcome of each row in one transaction:

- a 2xx answer: sent;
- anything else (a non-2xx status, a refused connection, a timeout, a redirect, which is
  never followed): the row backs off on its own, ``initial_backoff`` doubling up to
  ``max_backoff``, with jitter (so rows that failed together do not come back together);
  after ``max_failures`` failures it is set aside with the reason, until ops requeue it
  (``POST /v1/webhooks/{id}/requeue``, ``tidings webhooks requeue``). The rows of an
  endpoint that failed this round and were not tried yet wait as long, uncounted, so a
  receiver that is down gets one request per round, not a batch of them.

An endpoint's events go out in the order they were queued while it answers, a few at a time;
delivery is at least once (a crash between a 2xx and its record sends the event again, with
the same ``webhook-id``). Whatever else goes wrong in a round is logged and the dispatcher
carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx
from sqlalchemy.exc import SQLAlchemyError

import tidings
from tidings.egress import EgressPolicy, guarded_transport
from tidings.observe.metrics import WEBHOOK_ATTEMPTS
from tidings.store import webhooks
from tidings.store.db import Database
from tidings.store.secrets import SecretBox, SecretError
from tidings.store.types import utcnow
from tidings.store.webhooks import Claimed, ClaimedBatch
from tidings.tracebacks import describe, safe_traceback
from tidings.webhooks.signing import signed_headers

log = logging.getLogger(__name__)

USER_AGENT = f"tidings-webhooks/{tidings.__version__}"


@dataclass(frozen=True)
class DispatcherOptions:
    batch_size: int = 200  # rows per round
    concurrency: int = 32  # requests in flight, all endpoints together
    per_endpoint: int = 4  # requests in flight to one endpoint
    idle_interval: timedelta = timedelta(milliseconds=500)
    # a row that fails waits initial_backoff, doubling up to max_backoff (jittered), and is
    # set aside after max_failures failures (about a day of trying by default)
    initial_backoff: timedelta = timedelta(seconds=5)
    max_backoff: timedelta = timedelta(hours=1)
    max_failures: int = 30
    # sent rows are kept this long for inspection, then pruned
    retention: timedelta = timedelta(days=7)
    prune_interval: timedelta = timedelta(minutes=10)

    def backoff(self, failures: int) -> timedelta:
        """How long a row waits after its ``failures``-th failure: doubled each time,
        capped, then jittered down by up to half."""
        doubled: timedelta = self.initial_backoff * (2 ** min(max(failures - 1, 0), 30))
        capped = min(doubled, self.max_backoff)
        return capped * random.uniform(0.5, 1.0)


@dataclass
class DispatchRound:
    """What one round did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    set_aside: int = 0
    released: int = 0  # not tried: their endpoint failed first this round
    full: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Attempt:
    row: Claimed
    error: str | None  # None: sent


class Dispatcher:
    def __init__(
        self,
        db: Database,
        secrets: SecretBox,
        policy: EgressPolicy,
        options: DispatcherOptions | None = None,
    ) -> None:
        self.db = db
        self.secrets = secrets
        self.policy = policy
        self.options = options or DispatcherOptions()
        self._client = httpx.AsyncClient(
            transport=guarded_transport(policy, max_connections=self.options.concurrency),
            timeout=policy.timeout_s,
            follow_redirects=False,
            trust_env=False,
            headers={"user-agent": USER_AGENT, "content-type": "application/json"},
        )
        self._requests = asyncio.Semaphore(self.options.concurrency)
        self._pruned_at: float | None = None

    @property
    def lease(self) -> timedelta:
        """Longer than a round's sends can take: an endpoint's rows go a few at a time."""
        rounds = -(-self.options.batch_size // self.options.per_endpoint)
        return timedelta(seconds=self.policy.timeout_s * (rounds + 1) + 5)

    async def close(self) -> None:
        await self._client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set, whatever fails in between."""
        backoff = self.options.idle_interval.total_seconds()
        while not stop.is_set():
            try:
                done = await self.dispatch_once()
                await self._prune()
                backoff = self.options.idle_interval.total_seconds()
            except (SQLAlchemyError, OSError) as error:
                log.warning("webhook dispatcher: the store failed (%s)", describe(error))
                done = DispatchRound()
                backoff = min(backoff * 2, 15.0)
            except Exception as error:
                # a bug or a surprise must not end dispatching for the life of the worker
                log.error(
                    "webhook dispatcher: a round failed (%s); trying again\n%s",
                    describe(error),
                    safe_traceback(error),
                )
                done = DispatchRound()
                backoff = min(backoff * 2, 15.0)
            if not done.full:
                await _wait(stop, backoff)

    async def dispatch_once(self) -> DispatchRound:
        """One round: claim a batch, send it, record what became of each row."""
        now = utcnow()
        async with self.db.read() as session:
            if not await webhooks.any_due(session, now):
                return DispatchRound()
        async with self.db.write() as session:
            batch = await webhooks.claim_due(
                session, self.options.batch_size, now, self.lease, lock=not self.db.is_sqlite
            )
        if not batch.rows:
            return DispatchRound()
        attempts, untried = await self._send_all(batch)
        return await self._record(batch, attempts, untried)

    async def _send_all(self, batch: ClaimedBatch) -> tuple[list[_Attempt], list[Claimed]]:
        by_endpoint: dict[str, list[Claimed]] = defaultdict(list)
        for row in batch.rows:
            by_endpoint[row.endpoint_id].append(row)
        results = await asyncio.gather(
            *(self._send_endpoint(batch, rows) for rows in by_endpoint.values())
        )
        attempts = [a for tried, _ in results for a in tried]
        untried = [r for _, left in results for r in left]
        return attempts, untried

    async def _send_endpoint(
        self, batch: ClaimedBatch, rows: list[Claimed]
    ) -> tuple[list[_Attempt], list[Claimed]]:
        """The endpoint's rows in order, a few at a time, until one fails."""
        endpoint = batch.endpoints.get(rows[0].endpoint_id)
        if endpoint is None:  # deleted as the batch was claimed: its rows went with it
            return [], []
        url, sealed = endpoint
        try:
            secret = self.secrets.open(sealed)
        except SecretError as error:
            return [_Attempt(row, f"cannot sign: {error}") for row in rows], []
        tried: list[_Attempt] = []
        step = self.options.per_endpoint
        for start in range(0, len(rows), step):
            group = rows[start : start + step]
            tried += await asyncio.gather(*(self._send(url, secret, row) for row in group))
            if any(a.error is not None for a in tried[-len(group) :]):
                return tried, rows[start + step :]
        return tried, []

    async def _send(self, url: str, secret: str, row: Claimed) -> _Attempt:
        body = json.dumps(row.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = signed_headers(secret, row.event_id, int(time.time()), body)
        async with self._requests:
            try:
                answer = await self._client.post(url, content=body, headers=headers)
            except httpx.HTTPError as error:
                return _Attempt(row, f"{type(error).__name__}: {error}"[:500])
        if 200 <= answer.status_code < 300:
            return _Attempt(row, None)
        return _Attempt(row, f"the endpoint answered HTTP {answer.status_code}")

    async def _record(
        self, batch: ClaimedBatch, attempts: Sequence[_Attempt], untried: Sequence[Claimed]
    ) -> DispatchRound:
        now = utcnow()
        done = DispatchRound(
            claimed=len(batch.rows), full=len(batch.rows) >= self.options.batch_size
        )
        sent = [a.row.id for a in attempts if a.error is None]
        # rows that failed, by their count of failures and reason
        failed: dict[tuple[int, str], list[int]] = defaultdict(list)
        retry_of: dict[tuple[int, str], datetime] = {}
        endpoint_wait: dict[str, datetime] = {}
        for attempt in attempts:
            if attempt.error is None:
                continue
            count = attempt.row.failures + 1
            key = (count, attempt.error)
            failed[key].append(attempt.row.id)
            retry_at = retry_of.setdefault(key, now + self.options.backoff(count))
            endpoint = attempt.row.endpoint_id
            endpoint_wait[endpoint] = max(endpoint_wait.get(endpoint, retry_at), retry_at)
            done.errors.append(attempt.error)
        async with self.db.write() as session:
            await webhooks.mark_sent(session, sent, now, "answered 2xx")
            for (count, reason), ids in sorted(failed.items()):
                if count >= self.options.max_failures:
                    await webhooks.set_aside(session, ids, reason, now)
                    done.set_aside += len(ids)
                else:
                    await webhooks.defer(session, ids, reason, retry_of[(count, reason)])
                    done.retried += len(ids)
            by_wait: dict[datetime, list[int]] = defaultdict(list)
            for row in untried:
                by_wait[endpoint_wait[row.endpoint_id]].append(row.id)
            for retry_at, ids in by_wait.items():
                await webhooks.release(session, ids, retry_at)
            done.released = len(untried)
        done.sent = len(sent)
        WEBHOOK_ATTEMPTS.labels("sent").inc(done.sent)
        WEBHOOK_ATTEMPTS.labels("retried").inc(done.retried)
        WEBHOOK_ATTEMPTS.labels("set_aside").inc(done.set_aside)
        if done.errors:
            hosts = sorted({_host(batch.endpoints[e][0]) for e in endpoint_wait})
            log.warning(
                "webhooks: %s of %s events not sent yet (%s set aside) to %s: %s",
                done.retried + done.set_aside + done.released,
                done.claimed,
                done.set_aside,
                ", ".join(hosts),
                done.errors[0],
            )
        return done

    async def _prune(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.options.prune_interval.total_seconds()
        if self._pruned_at is not None and loop.time() - self._pruned_at < interval:
            return
        self._pruned_at = loop.time()
        async with self.db.write() as session:
            await webhooks.prune_sent(session, utcnow() - self.options.retention)


def _host(url: str) -> str:
    """What a log line may say of an endpoint: its host (the URL may carry a secret)."""
    return urlsplit(url).hostname or "?"


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


@contextlib.asynccontextmanager
async def dispatching(
    db: Database,
    secrets: SecretBox,
    policy: EgressPolicy,
    options: DispatcherOptions | None = None,
) -> AsyncIterator[Dispatcher]:
    """Run a dispatcher in this event loop while the context lasts (beside a worker)."""
    dispatcher = Dispatcher(db, secrets, policy, options)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop), name="tidings-webhook-dispatcher")
    try:
        yield dispatcher
    finally:
        stop.set()
        await task
        await dispatcher.close()
