"""What each provider answer means for its ledger row: pure logic of the delivery verdicts."""

from __future__ import annotations

from datetime import timedelta

from activities.delivery.verdicts import QUOTA_MIN_DELAY, AttemptVerdicts, NotSent, judge
from tidings.push import Outcome, SendResult
from tidings.store.models import DeliveryStatus, SendCause
from tidings.store.types import utcnow


def _learn(results: list[SendResult | NotSent], provider: str = "fcm") -> AttemptVerdicts:
    learnt = AttemptVerdicts()
    now = utcnow()
    for row_id, result in enumerate(results):
        learnt.note(judge(row_id, row_id, provider, result, now))
    return learnt


def test_quota_exceeded_waits_at_least_a_minute_and_retry_after_is_a_floor() -> None:
    learnt = _learn(
        [
            SendResult(Outcome.RETRY_LATER, 429, "QUOTA_EXCEEDED", retry_after_s=1),
            SendResult(Outcome.RETRY_LATER, 503, "UNAVAILABLE", retry_after_s=12),
            SendResult(Outcome.DELIVERED, 200),
        ]
    )
    assert learnt.retry_after == QUOTA_MIN_DELAY == timedelta(seconds=60)
    assert sorted(learnt.open_rows) == [0, 1]
    assert _learn(
        [SendResult(Outcome.RETRY_LATER, 503, "UNAVAILABLE", retry_after_s=12)]
    ).retry_after == timedelta(seconds=12)


def test_a_lost_answer_leaves_the_row_open_as_unknown_and_never_touches_the_token() -> None:
    verdict = judge(7, 3, "apns", SendResult(Outcome.ANSWER_LOST, reason="timeout"), utcnow())
    assert verdict.completion.status is DeliveryStatus.UNKNOWN
    assert verdict.completion.answer_lost
    assert not verdict.completion.closes
    assert verdict.gone is None
    assert verdict.suspect is None
    assert verdict.app_fault is None


def test_a_gone_token_is_judged_only_on_the_providers_answer() -> None:
    now = utcnow()
    gone = judge(1, 9, "fcm", SendResult(Outcome.TOKEN_GONE, 404, "UNREGISTERED"), now)
    assert gone.gone == (9, now, "404 UNREGISTERED")
    assert gone.completion.closes
    not_sent = judge(1, 9, "fcm", SendResult(Outcome.RETRY_LATER, reason="not sent: x"), now)
    assert not_sent.gone is None
    assert not not_sent.completion.closes


def test_a_refused_push_ends_its_other_open_sends_but_keeps_lost_answers_unknown() -> None:
    learnt = _learn(
        [
            SendResult(Outcome.CONFIG_FAULT, 413, "PayloadTooLarge"),
            SendResult(Outcome.RETRY_LATER, 503, "ServiceUnavailable"),
            SendResult(Outcome.ANSWER_LOST, reason="connection lost"),
        ],
        provider="apns",
    )
    assert learnt.refused == {"apns": "413 PayloadTooLarge"}
    ended = {c.row_id: c for c in learnt.fail_with_the_refused_push()}
    assert ended[1].status is DeliveryStatus.CONFIG_FAULT
    assert ended[2].status is DeliveryStatus.UNKNOWN
    assert {c.cause for c in ended.values()} == {SendCause.WITH_REFUSED_PUSH}
    assert all(c.closes for c in ended.values())
    assert learnt.open_rows == {}


def test_an_app_fault_stops_the_provider_and_closes_the_row() -> None:
    learnt = _learn([SendResult(Outcome.CONFIG_FAULT, 403, "InvalidProviderToken")], "apns")
    assert learnt.app_faults == {"apns": "403 InvalidProviderToken"}
    assert learnt.open_rows == {}


def test_a_send_not_made_closes_with_its_own_status_and_cause() -> None:
    late = NotSent(DeliveryStatus.EXPIRED, "expired while waiting", SendCause.RATE_TURN)
    verdict = judge(4, 4, "fcm", late, utcnow())
    assert (verdict.completion.status, verdict.completion.cause) == (
        DeliveryStatus.EXPIRED,
        SendCause.RATE_TURN,
    )
    assert verdict.completion.closes
