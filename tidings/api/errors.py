"""One JSON shape for every error: ``{"error": {"code", "message", "details"}}``.

``code`` is machine-readable and stable; ``message`` is for people; ``details`` lists field
problems (``loc`` and ``msg``) for validation errors.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.tracebacks import describe, safe_traceback

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] = []


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=details or []))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


def field_problems(error: RequestValidationError) -> list[dict[str, Any]]:
    problems = []
    for item in error.errors():
        # Never echo the input back: it may be a credential.
        problems.append({"loc": [str(part) for part in item.get("loc", ())], "msg": item["msg"]})
    return problems


def summarise(problems: list[dict[str, Any]]) -> str:
    summary = "; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems[:5])
    return summary or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message, error.details, error.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = field_problems(error)
        return error_response(422, "invalid_request", summarise(problems), problems)

    @app.exception_handler(DataError)
    async def _data(_request: Request, _error: DataError) -> JSONResponse:
        # The last line of defence: the models validate values before the store sees them.
        return error_response(422, "invalid_value", "a value cannot be stored as given")

    @app.exception_handler(IntegrityError)
    async def _conflict(_request: Request, _error: IntegrityError) -> JSONResponse:
        return error_response(409, "conflict", "the change conflicts with stored data")

    app.add_middleware(UnexpectedErrors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(error.status_code, "error")
        return error_response(
            error.status_code, code, str(error.detail), headers=getattr(error, "headers", None)
        )


class UnexpectedErrors:
    """Answers 500 in the one shape for an error no handler took, and logs it safely.

    An ``Exception`` handler would not do: Starlette re-raises after calling it, so the server
    logs the exception again with its message, which may quote stored values (a token in a
    PostgreSQL constraint error). Here the error ends: logged with its frames and type only
    (tidings.tracebacks), and answered without a word on its cause.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            # the route's template, not the path: a path may hold a user's id
            route = getattr(scope.get("route"), "path", "an unknown route")
            log.error(
                "unexpected error answering %s %s: %s\n%s",
                scope.get("method", "?"),
                route,
                describe(error),
                safe_traceback(error),
            )
            if not started:
                answer = error_response(
                    500, "internal_error", "the request failed; it may be retried"
                )
                await answer(scope, receive, send)


DESCRIPTIONS = {
    400: "The request is malformed",
    401: "Missing, unknown or revoked API key",
    403: "The key may not touch this resource",
    404: "Not found",
    409: "The change conflicts with stored data",
    413: "The request body is larger than the operation takes (the message names the limit)",
    415: "The body's media type is not one the operation takes",
    422: "The request is invalid",
    429: "Too many failed authentications from this address: wait `Retry-After` seconds "
    "(a valid key is still served)",
    503: "Temporal, which moves runs, cannot be reached",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI descriptions of error answers, each in the one error shape."""
    return {
        status: {"model": ErrorResponse, "description": DESCRIPTIONS[status]} for status in statuses
    }


# what every authenticated operation may answer
ERROR_RESPONSES = responses(401, 403, 404, 422, 429)
