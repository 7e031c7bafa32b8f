"""The compatible surface answers 400 for any malformed request, as the original does."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from tidings.api.errors import ApiError, field_problems, responses, summarise

OrgId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="the Customer Insights organisation id; accepted and ignored",
    ),
]

BAD_REQUEST = responses(400)


class CompatRoute(APIRoute):
    """Request validation errors become 400 (the original's answer), in tidings' one error
    shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                problems = field_problems(error)
                raise ApiError(400, "bad_request", summarise(problems), problems) from None

        return route
