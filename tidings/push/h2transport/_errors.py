"""The two ways a request fails, and the internal mark of an attempt that may be resent."""

from __future__ import annotations

import httpx
from h2.errors import ErrorCodes


class RequestNotProcessed(httpx.TransportError):
    """The server cannot have processed the request: sending it again cannot duplicate it.

    ``reason`` says why, briefly ("stream refused (REFUSED_STREAM)", "GOAWAY NO_ERROR
    last_stream_id=41", "connect failed: ...", "pool timeout"); ``resends`` counts the times
    the transport already sent it again before giving up.
    """

    def __init__(self, reason: str, *, resends: int = 0) -> None:
        detail = f"{reason} (after {resends} resends)" if resends else reason
        super().__init__(f"request not processed: {detail}")
        self.reason = reason
        self.resends = resends


class AnswerLost(httpx.TransportError):
    """The request was written whole and no answer came: the server may have processed it.

    ``reason`` says what happened ("timeout", "connection reset", "stream reset
    INTERNAL_ERROR", "GOAWAY PROTOCOL_ERROR last_stream_id=7, then connection closed").
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"answer lost: {reason}")
        self.reason = reason


class Unsent(Exception):
    """One attempt failed before the server could have processed it: it may be resent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def code_name(code: ErrorCodes | int | None) -> str:
    if isinstance(code, ErrorCodes):
        return code.name
    return f"error {code}"
