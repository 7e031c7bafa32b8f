"""When the pushes of a batch expire: per profile, counted from the moment the profile
reached the push node, not from the send.

A send held for quiet hours, or waiting for a retry, must not go out past its node's TTL:
``DeliveryActivities.deliver`` asks :func:`send_deadlines` once per attempt and hands the
expired profiles to :func:`hold_expired`, which records their sends as expired (never sent),
the way the frequency cap holds its profiles back.

- No TTL: the push never expires.
- TTL above 0: it expires ``ttl`` after the profile reached the node.
- TTL 0: "now or never", as APNs (``apns-expiration: 0``) and FCM (``ttl: 0s``) define it:
  one immediate attempt. The push goes out in the batch's first attempt when the profile
  was not held on the node; a held push, or any retry, is expired. Providers are told 0 s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from activities.contracts import PushBatch
from activities.delivery.plan import PlannedDelivery
from tidings.store.models import DeliveryStatus, SendCause

# How long a TTL-0 push may take to leave within its one attempt (a send rate limit may make
# it wait its turn). TTLs are whole seconds, so providers are still told 0 s.
NOW_OR_NEVER = timedelta(seconds=1)


@dataclass(frozen=True)
class SendDeadlines:
    """What one attempt of a batch may still send."""

    # profile id -> why its push is expired and must not go out
    expired: dict[str, str] = field(default_factory=dict)
    # the deadline of the sends that may go out (the earliest, if profiles reached the node
    # at different times): what the providers are told, what retries are held to, and what
    # the ledger keeps. When every push has expired, the earliest of their deadlines.
    expires_at: datetime | None = None


def send_deadlines(batch: PushBatch, now: datetime, attempt: int) -> SendDeadlines:
    """The deadlines of ``batch``'s pushes at ``now``, in the activity's ``attempt`` (1: the
    first)."""
    if batch.ttl_s is None or not batch.profiles:
        return SendDeadlines()
    ttl = timedelta(seconds=batch.ttl_s)
    expired: dict[str, str] = {}
    live: list[datetime] = []
    passed: list[datetime] = []
    for visit in batch.profiles:
        reached = visit.reached_at or batch.reached_at
        if batch.ttl_s == 0:
            reason = _now_or_never_problem(reached < batch.reached_at, attempt)
            deadline = reached if reason else now + NOW_OR_NEVER
        else:
            deadline = reached + ttl
            reason = (
                f"expired before it could be sent: its TTL of {batch.ttl_s}s from reaching "
                f"the node ran out at {deadline.isoformat(timespec='seconds')}"
                if now >= deadline
                else None
            )
        if reason:
            expired[visit.profile_id] = reason
            passed.append(deadline)
        else:
            live.append(deadline)
    return SendDeadlines(expired, min(live) if live else min(passed))


def _now_or_never_problem(held: bool, attempt: int) -> str | None:
    if held:
        return "expired: TTL 0s (now or never), and it was held when it reached the node"
    if attempt > 1:
        return "expired: TTL 0s (now or never) allows no retry"
    return None


def hold_expired(sends: Iterable[PlannedDelivery], expired: Mapping[str, str]) -> None:
    """Record the expired profiles' sends as expired instead of sending them (sends another
    rule already holds keep their own reason)."""
    if not expired:
        return
    for send in sends:
        reason = expired.get(send.plan.profile_id)
        if reason is not None and send.plan.status is DeliveryStatus.PENDING:
            send.plan = dataclasses.replace(
                send.plan, status=DeliveryStatus.EXPIRED, reason=reason, cause=SendCause.EXPIRED
            )
            send.message = None
