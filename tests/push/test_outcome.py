"""Classification of provider answers, as pure functions (the table-driven test in
tests/delivery sends every row through the real clients)."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import pytest
from firebase_admin import exceptions

from tidings.push.fcm import _classify_exception, _retry_after
from tidings.push.h2transport import AnswerLost, RequestNotProcessed
from tidings.push.outcome import (
    APNS_CONFIG_FAULT,
    APNS_REFRESH_CREDENTIALS,
    APNS_RETRY_LATER,
    APNS_TOKEN_SUSPECT,
    Outcome,
    apns_known,
    classify_apns,
    classify_fcm,
)


@pytest.mark.parametrize(
    ("table", "outcome"),
    [
        (APNS_RETRY_LATER, Outcome.RETRY_LATER),
        (APNS_REFRESH_CREDENTIALS, Outcome.REFRESH_CREDENTIALS),
        (APNS_TOKEN_SUSPECT, Outcome.TOKEN_SUSPECT),
        (APNS_CONFIG_FAULT, Outcome.CONFIG_FAULT),
    ],
)
def test_apns_tables(table: set[tuple[int, str]], outcome: Outcome) -> None:
    for status, reason in table:
        assert classify_apns(status, reason, None) is outcome, reason
        assert apns_known(status, reason, None)


def test_apns_gone_needs_its_timestamp() -> None:
    for reason in ("Unregistered", "ExpiredToken"):
        assert classify_apns(410, reason, 1_700_000_000_000) is Outcome.TOKEN_GONE
        # without a timestamp the registration race cannot be decided: keep the token
        assert classify_apns(410, reason, None) is Outcome.TOKEN_SUSPECT
        assert not apns_known(410, reason, None)


@pytest.mark.parametrize(
    ("status", "reason"),
    [(400, "SomethingNew"), (502, "(unreadable body)"), (500, "(empty body)"), (418, None)],
)
def test_unknown_apns_answers_are_retried_and_flagged(status: int, reason: str | None) -> None:
    assert classify_apns(status, reason, None) is Outcome.RETRY_LATER
    assert not apns_known(status, reason, None)


@pytest.mark.parametrize(
    ("status", "code", "status_name", "message", "outcome"),
    [
        (200, None, None, "", Outcome.DELIVERED),
        (503, "UNAVAILABLE", "UNAVAILABLE", "", Outcome.RETRY_LATER),
        (500, "INTERNAL", "INTERNAL", "", Outcome.RETRY_LATER),
        (429, "QUOTA_EXCEEDED", "RESOURCE_EXHAUSTED", "", Outcome.RETRY_LATER),
        (404, "UNREGISTERED", "NOT_FOUND", "", Outcome.TOKEN_GONE),
        (403, "SENDER_ID_MISMATCH", "PERMISSION_DENIED", "", Outcome.TOKEN_SUSPECT),
        (401, "THIRD_PARTY_AUTH_ERROR", "UNAUTHENTICATED", "", Outcome.CONFIG_FAULT),
        (401, "APNS_AUTH_ERROR", "UNAUTHENTICATED", "", Outcome.CONFIG_FAULT),
        (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "x message.token", Outcome.TOKEN_GONE),
        (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "x message.fid", Outcome.TOKEN_GONE),
        (
            400,
            "INVALID_ARGUMENT",
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            Outcome.TOKEN_GONE,
        ),
        (400, "INVALID_ARGUMENT", None, "message.data[0].value", Outcome.CONFIG_FAULT),
        (403, None, "PERMISSION_DENIED", "denied", Outcome.CONFIG_FAULT),
        (404, None, "NOT_FOUND", "Requested entity was not found.", Outcome.CONFIG_FAULT),
        (401, None, "UNAUTHENTICATED", "expired", Outcome.REFRESH_CREDENTIALS),
        # outside the table: retried, whatever the HTTP status says
        (404, "SOMETHING_NEW", "NOT_FOUND", "", Outcome.RETRY_LATER),
        (502, None, None, "", Outcome.RETRY_LATER),
    ],
)
def test_fcm_table(
    status: int, code: str | None, status_name: str | None, message: str, outcome: Outcome
) -> None:
    assert classify_fcm(status, code, status_name, message) is outcome


def _answer(status: int, body: object, headers: dict[str, str] | None = None) -> SimpleNamespace:
    content = body if isinstance(body, str) else httpx.Response(200, json=body).text
    response = httpx.Response(status, text=content, headers=headers or {})
    return SimpleNamespace(http_response=response)


def test_a_malformed_fid_is_a_gone_token_like_a_malformed_token() -> None:
    """firebase-admin 7.7 moves from Message.token to Message.fid; the field violation then
    names message.fid."""
    for field in ("message.token", "message.fid"):
        body = {
            "error": {
                "code": 400,
                "status": "INVALID_ARGUMENT",
                "message": "Request contains an invalid argument.",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                        "errorCode": "INVALID_ARGUMENT",
                    },
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": field, "description": "bad"}],
                    },
                ],
            }
        }
        result = _classify_exception(_answer(400, body))  # type: ignore[arg-type]
        assert result.outcome is Outcome.TOKEN_GONE
        assert field in (result.reason or "")


def test_unreadable_fcm_answers_keep_their_raw_text() -> None:
    html = "<html><body>502 Bad Gateway</body></html>"
    result = _classify_exception(_answer(502, html))  # type: ignore[arg-type]
    assert (result.outcome, result.known, result.raw) == (Outcome.RETRY_LATER, False, html)
    empty = _classify_exception(_answer(500, ""))  # type: ignore[arg-type]
    assert (empty.outcome, empty.known, empty.reason) == (Outcome.RETRY_LATER, False, "HTTP 500")


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert _retry_after("30") == 30
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # in the past
    assert _retry_after("soon") is None


@pytest.mark.parametrize(
    ("cause", "outcome", "reason"),
    [
        (RequestNotProcessed("stream refused"), Outcome.RETRY_LATER, "not sent: stream refused"),
        (httpx.ConnectError("refused"), Outcome.RETRY_LATER, "not sent: ConnectError"),
        (AnswerLost("connection reset"), Outcome.ANSWER_LOST, "answer lost: connection reset"),
        (httpx.ReadTimeout("slow"), Outcome.ANSWER_LOST, "answer lost: ReadTimeout"),
    ],
)
def test_an_fcm_send_without_an_answer_is_never_processed_or_its_answer_lost(
    cause: Exception, outcome: Outcome, reason: str
) -> None:
    """firebase-admin hands a transport failure over as the cause of its error."""
    error = exceptions.UnknownError("no answer", cause=cause)
    result = _classify_exception(error)
    assert (result.outcome, result.reason) == (outcome, reason)
