"""What each provider answer means for its ledger row and its device (DESIGN.md decision 4).

:func:`judge` turns one result into a :class:`Verdict`: the row's completion (closed when
the answer is final, left open when it is to be retried) and the side effects that answer
asks for (invalidate a gone token, quarantine a suspect one, stop the app's sends to a
provider that rejected its credentials). A token is judged only on the provider's own
answer: a send that got no answer never touches it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tidings.push import Outcome, SendResult
from tidings.push.outcome import APNS_TOKEN_UPDATES, FCM_QUOTA_REASONS, FaultScope, fault_scope
from tidings.store.ledger import Completion
from tidings.store.models import DeliveryStatus, SendCause

# Google: a QUOTA_EXCEEDED send waits at least a minute before its first retry.
QUOTA_MIN_DELAY = timedelta(seconds=60)
# Apple: a team's provider token may be updated once every 20 minutes at most; a push
# answered TooManyProviderTokenUpdates waits that long (the JWT is kept, never re-minted).
TOKEN_UPDATES_MIN_DELAY = timedelta(minutes=20)
PUSH_REFUSED = "push refused: "
FINAL_BY_OUTCOME = {
    Outcome.DELIVERED: DeliveryStatus.DELIVERED,
    Outcome.TOKEN_GONE: DeliveryStatus.TOKEN_GONE,
    Outcome.TOKEN_SUSPECT: DeliveryStatus.TOKEN_SUSPECT,
    Outcome.CONFIG_FAULT: DeliveryStatus.CONFIG_FAULT,
    Outcome.ANSWER_LOST: DeliveryStatus.UNKNOWN,
}


def refused_with(refusal: str) -> str:
    """The reason of a send that fails because the provider refused the same push."""
    return f"failed with the refused push ({PUSH_REFUSED}{refusal})"


@dataclass(frozen=True, slots=True)
class NotSent:
    """A pending send this attempt did not make, and the final status that says why."""

    status: DeliveryStatus
    reason: str
    cause: SendCause


@dataclass(frozen=True, slots=True)
class Verdict:
    """One row's completion and what its answer asks of the device and the app."""

    completion: Completion
    provider: str | None = None
    # device id, when the provider learnt it was gone, why
    gone: tuple[int, datetime, str] | None = None
    suspect: tuple[int, str] | None = None
    # a fault of the app's credentials or setup: its sends to ``provider`` stop
    app_fault: str | None = None
    # a fault of this push (payload, headers): its other sends to ``provider`` fail too
    push_refused: str | None = None
    # to be retried: no sooner than this, and why
    retry_after: timedelta = timedelta(0)
    retry_reason: str | None = None


def judge(
    row_id: int,
    device_id: int | None,
    provider: str | None,
    result: SendResult | NotSent,
    now: datetime,
    token_updates_min_delay: timedelta = TOKEN_UPDATES_MIN_DELAY,
) -> Verdict:
    """The verdict on one send's result (``now``: when the attempt started, the moment a
    gone token is judged against when FCM says nothing of when)."""
    if isinstance(result, NotSent):
        completion = Completion(row_id, result.status, result.reason, None, result.cause)
        return Verdict(completion, provider)
    status = FINAL_BY_OUTCOME.get(result.outcome, DeliveryStatus.PENDING)
    reason = result.describe
    if result.outcome is Outcome.TOKEN_GONE and device_id is not None:
        completion = Completion(row_id, status, reason, None)
        return Verdict(completion, provider, gone=(device_id, result.gone_at or now, reason))
    if result.outcome is Outcome.TOKEN_SUSPECT and device_id is not None:
        return Verdict(
            Completion(row_id, status, reason, None), provider, suspect=(device_id, reason)
        )
    if result.outcome is Outcome.CONFIG_FAULT and provider:
        if fault_scope(provider, result) is FaultScope.MESSAGE:
            completion = Completion(
                row_id, status, f"{PUSH_REFUSED}{reason}", None, SendCause.PUSH_REFUSED
            )
            return Verdict(completion, provider, push_refused=reason)
        completion = Completion(row_id, status, reason, None, SendCause.APP_STOPPED)
        return Verdict(completion, provider, app_fault=reason)
    if status in (DeliveryStatus.PENDING, DeliveryStatus.UNKNOWN):
        delay = timedelta(seconds=result.retry_after_s or 0)
        if result.reason in FCM_QUOTA_REASONS:
            delay = max(delay, QUOTA_MIN_DELAY)
        if result.reason == APNS_TOKEN_UPDATES:
            delay = max(delay, token_updates_min_delay)
        lost = status is DeliveryStatus.UNKNOWN
        completion = Completion(row_id, status, reason, None, answer_lost=lost)
        return Verdict(completion, provider, retry_after=delay, retry_reason=reason)
    return Verdict(Completion(row_id, status, reason, result.message_id), provider)


@dataclass
class AttemptVerdicts:
    """What one attempt learnt, gathered as its verdicts arrive."""

    # rows left open (to be retried), by row id: their latest completion
    open_rows: dict[int, Completion] = field(default_factory=dict)
    # by provider: faults of the app's credentials or setup (its sends stop) ...
    app_faults: dict[str, str] = field(default_factory=dict)
    # ... and faults of this push (its other sends to that provider in this batch fail too)
    refused: dict[str, str] = field(default_factory=dict)
    provider_of: dict[int, str] = field(default_factory=dict)
    retry_after: timedelta = timedelta(0)
    retry_reasons: Counter[str] = field(default_factory=Counter)

    def note(self, verdict: Verdict) -> None:
        completion = verdict.completion
        if verdict.provider is not None:
            self.provider_of[completion.row_id] = verdict.provider
            if verdict.app_fault is not None:
                self.app_faults.setdefault(verdict.provider, verdict.app_fault)
            if verdict.push_refused is not None:
                self.refused.setdefault(verdict.provider, verdict.push_refused)
        if completion.closes:
            self.open_rows.pop(completion.row_id, None)
            return
        self.open_rows[completion.row_id] = completion
        self.retry_after = max(self.retry_after, verdict.retry_after)
        if verdict.retry_reason:
            self.retry_reasons[verdict.retry_reason] += 1

    def fail_with_the_refused_push(self) -> list[Completion]:
        """A provider refused this push itself (its payload, its headers): its open sends to
        that provider would be refused alike, so they end now, not retried. A send whose
        answer was lost keeps ``unknown``: it may have been delivered."""
        ended: list[Completion] = []
        for row_id, completion in list(self.open_rows.items()):
            refusal = self.refused.get(self.provider_of.get(row_id, ""))
            if refusal is None:
                continue
            lost = completion.status is DeliveryStatus.UNKNOWN
            ended.append(
                Completion(
                    row_id,
                    DeliveryStatus.UNKNOWN if lost else DeliveryStatus.CONFIG_FAULT,
                    f"{refused_with(refusal)}; its own answer: {completion.reason}",
                    None,
                    SendCause.WITH_REFUSED_PUSH,
                    close=True,
                )
            )
            del self.open_rows[row_id]
        if ended:
            self.retry_reasons = Counter(
                c.reason or "" for c in self.open_rows.values() if c.reason
            )
        return ended
