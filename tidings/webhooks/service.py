"""Webhook endpoints as the API, the CLI and the console manage them: one service layer, so
all three check and answer alike.

An endpoint's URL is held to the egress rules of every URL a caller gives tidings
(tidings.egress): ``https``, to a host whose every address is public, unless ops allow-list
the host or its network with ``TIDINGS_CALLBACK_ALLOWED`` (``http`` is accepted only to
such a host: ops' own receivers). Its signing secret is made here, returned once by
:func:`create_endpoint`, and stored sealed under the secret key; no other answer holds it.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from tidings.egress import DestinationRefused, EgressPolicy, check_destination, host_and_port
from tidings.store import webhooks
from tidings.store.db import Database
from tidings.store.models import App, WebhookDelivery, WebhookEndpoint
from tidings.store.secrets import SecretBox
from tidings.store.types import utcnow
from tidings.store.webhooks import DeliveryState, EndpointCounts, WebhookEventType

MAX_URL_LENGTH = 2000
ADMIN = "admin"


class WebhookProblem(ValueError):
    """A request that cannot be done as asked: which field, and why."""

    def __init__(self, field: str, message: str, code: str = "invalid_webhook") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.code = code


class EndpointNotFound(LookupError):
    """No such endpoint, or not one the caller may see (the same answer: an app never
    learns another app's endpoints exist)."""


class EndpointRequest(BaseModel):
    url: str
    event_types: list[WebhookEventType]
    app_id: str | None = None
    description: str | None = None


class DeliveryCounts(BaseModel):
    pending: int = Field(description="waiting to be sent (perhaps backing off)")
    sent: int = Field(description="answered 2xx (kept for a week)")
    failed: int = Field(description="set aside after too many failures: requeue to retry")


class EndpointView(BaseModel):
    """An endpoint as every answer shows it: never its secret."""

    id: str
    url: str
    app_id: str | None = Field(description="the app whose events it takes; null: every app")
    event_types: list[WebhookEventType]
    description: str | None
    paused: bool
    paused_at: datetime | None
    created_by: str
    created_at: datetime
    deliveries: DeliveryCounts


class EndpointCreated(EndpointView):
    secret: str = Field(
        description="the signing secret, shown this once: verify `webhook-signature` with it"
    )


class DeliveryView(BaseModel):
    """One event bound for an endpoint, and where it stands."""

    id: int
    event_id: str
    event_type: str
    state: DeliveryState
    attempts: int
    failures: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None


def _view(endpoint: WebhookEndpoint, counts: EndpointCounts) -> EndpointView:
    return EndpointView(
        id=endpoint.id,
        url=endpoint.url,
        app_id=endpoint.app_id,
        event_types=[WebhookEventType(t) for t in endpoint.event_types],
        description=endpoint.description,
        paused=endpoint.paused_at is not None,
        paused_at=endpoint.paused_at,
        created_by=endpoint.created_by,
        created_at=endpoint.created_at,
        deliveries=DeliveryCounts(pending=counts.pending, sent=counts.sent, failed=counts.failed),
    )


def _delivery_view(row: WebhookDelivery) -> DeliveryView:
    return DeliveryView(
        id=int(row.id or 0),
        event_id=row.event_id,
        event_type=row.event_type,
        state=webhooks.state_of(row),
        attempts=row.forward_attempts,
        failures=row.forward_failures,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.forwarded_at,
        failed_at=row.forward_failed_at,
    )


async def check_url(url: str, policy: EgressPolicy) -> None:
    """WebhookProblem (field ``url``, code ``webhook_url_not_allowed`` for a destination
    the egress rules refuse) unless tidings may POST events to ``url``."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookProblem("url", f"at most {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise WebhookProblem("url", "it may not carry a user name or password")
    if parts.fragment:
        raise WebhookProblem("url", "it may not carry a fragment (#...)")
    try:
        host, _ = host_and_port(url)
        addresses = await check_destination(url, policy)
    except DestinationRefused as error:
        raise WebhookProblem("url", f"refused: {error}", "webhook_url_not_allowed") from None
    if parts.scheme != "https" and not all(policy.allow_listed(host, a) for a in addresses):
        raise WebhookProblem(
            "url",
            "refused: it must be https (http only to a host ops allow-list with "
            "TIDINGS_CALLBACK_ALLOWED)",
            "webhook_url_not_allowed",
        )


async def create_endpoint(
    db: Database,
    secrets: SecretBox,
    policy: EgressPolicy,
    request: EndpointRequest,
    *,
    caller_app: str | None,
) -> EndpointCreated:
    """Subscribe an endpoint. An app's key subscribes for that app only (its ``app_id`` is
    the app's); the admin may scope one to an app, or take every app's events."""
    app_id = request.app_id
    if caller_app is not None:
        if app_id not in (None, caller_app):
            raise WebhookProblem(
                "app_id", f"this API key subscribes for app {caller_app!r} only", "forbidden"
            )
        app_id = caller_app
    if not request.event_types:
        raise WebhookProblem("event_types", "name at least one event type")
    await check_url(request.url, policy)
    secret = webhooks.new_signing_secret()
    async with db.write() as session:
        if app_id is not None and await session.get(App, app_id) is None:
            raise WebhookProblem("app_id", f"no app {app_id!r}")
        endpoint = await webhooks.add_endpoint(
            session,
            WebhookEndpoint(
                id=webhooks.new_endpoint_id(),
                url=request.url,
                app_id=app_id,
                event_types=sorted({t.value for t in request.event_types}),
                description=request.description,
                secret=secrets.seal(secret),
                created_by=ADMIN if caller_app is None else f"app:{caller_app}",
                created_at=utcnow(),
            ),
        )
    view = _view(endpoint, EndpointCounts())
    return EndpointCreated(**view.model_dump(), secret=secret)


async def list_endpoints(
    db: Database, *, caller_app: str | None, after: str | None = None, limit: int = 50
) -> tuple[list[EndpointView], str | None]:
    """The endpoints the caller may see, by id; and the id to page after, if more follow."""
    async with db.read() as session:
        page = await webhooks.list_endpoints(session, app_id=caller_app, after=after, limit=limit)
        counts = await webhooks.delivery_counts(session, [e.id for e in page.items])
    return [_view(e, counts[e.id]) for e in page.items], page.next_after


async def get_endpoint(db: Database, endpoint_id: str, *, caller_app: str | None) -> EndpointView:
    endpoint = await _visible(db, endpoint_id, caller_app)
    async with db.read() as session:
        counts = await webhooks.delivery_counts(session, [endpoint_id])
    return _view(endpoint, counts[endpoint_id])


async def _visible(db: Database, endpoint_id: str, caller_app: str | None) -> WebhookEndpoint:
    async with db.read() as session:
        endpoint = await webhooks.get_endpoint(session, endpoint_id, app_id=caller_app)
    if endpoint is None:
        raise EndpointNotFound(f"no webhook endpoint {endpoint_id!r}")
    return endpoint


async def delete_endpoint(db: Database, endpoint_id: str, *, caller_app: str | None) -> None:
    """The endpoint and every event still bound for it (nothing more is sent to it)."""
    await _visible(db, endpoint_id, caller_app)
    async with db.write() as session:
        await webhooks.delete_endpoint(session, endpoint_id)


async def set_paused(
    db: Database, endpoint_id: str, paused: bool, *, caller_app: str | None
) -> EndpointView:
    """Paused, its events keep queuing and nothing is sent; resumed, they go out in order."""
    endpoint = await _visible(db, endpoint_id, caller_app)
    if (endpoint.paused_at is not None) != paused:
        async with db.write() as session:
            await webhooks.set_paused(session, endpoint_id, utcnow() if paused else None)
    return await get_endpoint(db, endpoint_id, caller_app=caller_app)


async def requeue(db: Database, endpoint_id: str, *, caller_app: str | None) -> int:
    """Give the endpoint's set-aside events another round of attempts; how many."""
    await _visible(db, endpoint_id, caller_app)
    async with db.write() as session:
        return await webhooks.requeue_failed(session, endpoint_id)


async def list_deliveries(
    db: Database,
    endpoint_id: str,
    *,
    caller_app: str | None,
    state: DeliveryState | None = None,
    after: int | None = None,
    limit: int = 50,
) -> tuple[list[DeliveryView], int | None]:
    await _visible(db, endpoint_id, caller_app)
    async with db.read() as session:
        page = await webhooks.list_deliveries(
            session, endpoint_id, state=state, after=after, limit=limit
        )
    return [_delivery_view(row) for row in page.items], page.next_after
