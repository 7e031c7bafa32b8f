"""Webhook endpoints: tidings' events (pushes sent, delivered, failed, tokens invalidated,
opens, clicks, runs started and finished) POSTed, signed, to HTTPS endpoints.

The admin key subscribes endpoints for every app or for one; an app's API key subscribes,
sees and changes only its own app's. The signing secret is in the creation's answer alone.
The service layer (tidings.webhooks.service) is the CLI's and the console's too.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from tidings.api.deps import APP_ID_PATTERN, CallerOf, State
from tidings.api.errors import ERROR_RESPONSES, ApiError
from tidings.api.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from tidings.api.types import LABEL
from tidings.egress import EgressPolicy
from tidings.store.webhooks import DeliveryState, WebhookEventType
from tidings.webhooks import service
from tidings.webhooks.service import (
    DeliveryView,
    EndpointCreated,
    EndpointNotFound,
    EndpointRequest,
    EndpointView,
    WebhookProblem,
)

log = logging.getLogger(__name__)

EndpointId = Annotated[
    str, Path(pattern=r"^wh_[0-9a-f]{16}$", description="the endpoint's id (wh_...)")
]

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=service.MAX_URL_LENGTH,
        description="where events are POSTed: https, to a public address (see the README's "
        "egress rules)",
    )
    event_types: list[WebhookEventType] = Field(min_length=1, max_length=len(WebhookEventType))
    app_id: str | None = Field(
        default=None,
        pattern=APP_ID_PATTERN,
        description="only this app's events (an app's key: its own, the default); the admin "
        "may leave it out for every app's",
    )
    description: str | None = Field(default=None, max_length=200, pattern=LABEL)


class Requeued(BaseModel):
    requeued: int = Field(description="set-aside events given another round of attempts")


def _problem(error: WebhookProblem) -> ApiError:
    if error.code == "forbidden":
        return ApiError(403, "forbidden", error.message)
    return ApiError(
        422,
        error.code,
        f"{error.field} is refused: {error.message}"
        if error.code == "webhook_url_not_allowed"
        else str(error),
        [{"loc": ["body", error.field], "msg": error.message}],
    )


def _not_found(error: EndpointNotFound) -> ApiError:
    return ApiError(404, "webhook_not_found", str(error))


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(body: WebhookCreate, caller: CallerOf, state: State) -> EndpointCreated:
    """Subscribe an endpoint. The answer holds its signing secret, this once (no other
    answer, log or page shows it again). A URL tidings may not call (not https, or a host
    that resolves to a loopback, private or reserved address) answers 422
    `webhook_url_not_allowed` naming why."""
    request = EndpointRequest(**body.model_dump())
    try:
        created = await service.create_endpoint(
            state.db,
            state.secrets,
            EgressPolicy.from_settings(state.settings),
            request,
            caller_app=caller.app_id,
        )
    except WebhookProblem as error:
        raise _problem(error) from None
    log.info("webhook endpoint %s created (app %s)", created.id, created.app_id or "*")
    return created


@router.get("")
async def list_all(
    caller: CallerOf, state: State, limit: Limit = 50, cursor: Cursor = None
) -> Page[EndpointView]:
    """The endpoints the caller may see (an app's key: its app's), by id; never a secret."""
    items, after = await service.list_endpoints(
        state.db, caller_app=caller.app_id, after=decode_cursor(cursor, str), limit=limit
    )
    return Page(items=items, next_cursor=encode_cursor(after))


@router.get("/{endpoint_id}")
async def get(endpoint_id: EndpointId, caller: CallerOf, state: State) -> EndpointView:
    """The endpoint and its events by where they stand (pending, sent, failed)."""
    try:
        return await service.get_endpoint(state.db, endpoint_id, caller_app=caller.app_id)
    except EndpointNotFound as error:
        raise _not_found(error) from None


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(endpoint_id: EndpointId, caller: CallerOf, state: State) -> Response:
    """Unsubscribe: the endpoint and every event still bound for it are gone."""
    try:
        await service.delete_endpoint(state.db, endpoint_id, caller_app=caller.app_id)
    except EndpointNotFound as error:
        raise _not_found(error) from None
    log.info("webhook endpoint %s deleted", endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{endpoint_id}/pause")
async def pause(endpoint_id: EndpointId, caller: CallerOf, state: State) -> EndpointView:
    """Nothing is sent while paused; its events keep queuing and go out on resume."""
    try:
        return await service.set_paused(state.db, endpoint_id, True, caller_app=caller.app_id)
    except EndpointNotFound as error:
        raise _not_found(error) from None


@router.post("/{endpoint_id}/resume")
async def resume(endpoint_id: EndpointId, caller: CallerOf, state: State) -> EndpointView:
    try:
        return await service.set_paused(state.db, endpoint_id, False, caller_app=caller.app_id)
    except EndpointNotFound as error:
        raise _not_found(error) from None


@router.post("/{endpoint_id}/requeue")
async def requeue(endpoint_id: EndpointId, caller: CallerOf, state: State) -> Requeued:
    """Give every set-aside event of the endpoint another round of attempts."""
    try:
        count = await service.requeue(state.db, endpoint_id, caller_app=caller.app_id)
    except EndpointNotFound as error:
        raise _not_found(error) from None
    log.info("webhook endpoint %s: %d set-aside events requeued", endpoint_id, count)
    return Requeued(requeued=count)


@router.get("/{endpoint_id}/deliveries")
async def deliveries(
    endpoint_id: EndpointId,
    caller: CallerOf,
    state: State,
    delivery_state: Annotated[DeliveryState | None, Query(alias="state")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[DeliveryView]:
    """The endpoint's events in the order they were queued, each with its attempts and last
    error (`?state=failed`: the set-aside ones)."""
    try:
        items, after = await service.list_deliveries(
            state.db,
            endpoint_id,
            caller_app=caller.app_id,
            state=delivery_state,
            after=decode_cursor(cursor, int),
            limit=limit,
        )
    except EndpointNotFound as error:
        raise _not_found(error) from None
    return Page(items=items, next_cursor=encode_cursor(after))
