"""`tidings webhooks`: endpoints that take tidings' events, on the same service layer as
/v1/webhooks (as the admin: every app's endpoints). The events themselves are sent by the
dispatcher beside each worker (`tidings worker`, `tidings up`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tidings.cli.designer import _settings, problem, success

if TYPE_CHECKING:
    from tidings.settings import Settings
    from tidings.store.db import Database
    from tidings.webhooks.service import EndpointCreated

T = TypeVar("T")
console = Console()
errors = Console(stderr=True)
app = typer.Typer(
    help="Webhook endpoints: tidings' events POSTed, signed, to HTTPS endpoints.",
    no_args_is_help=True,
)
EndpointArg = Annotated[str, typer.Argument(help="the endpoint's id (wh_...)")]
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON (what the API answers)")]


def _call(step: Callable[[Settings, Database], Awaitable[T]]) -> T:
    """Run a step on the store; what a caller can fix is one line, exit 1."""
    from tidings.stack import store_only
    from tidings.webhooks.service import EndpointNotFound, WebhookProblem

    settings = _settings()

    async def go() -> T:
        async with store_only(settings) as database:
            return await step(settings, database)

    try:
        return asyncio.run(go())
    except (WebhookProblem, EndpointNotFound) as error:
        errors.print(problem(error, "cannot do that:"), soft_wrap=True)
        raise typer.Exit(1) from None


@app.command("create")
def create(
    url: Annotated[str, typer.Argument(help="where events are POSTed (https)")],
    event: Annotated[
        list[str],
        typer.Option(
            "--event",
            "-e",
            help="an event type, repeatable: push.sent, push.delivered, push.failed, "
            "token.invalidated, push.opened, push.clicked, run.started, run.finished",
        ),
    ],
    app_id: Annotated[str | None, typer.Option("--app", help="only this app's events")] = None,
    description: Annotated[str | None, typer.Option(help="what it is for")] = None,
) -> None:
    """Subscribe an endpoint; prints its signing secret, this once."""
    from tidings.egress import EgressPolicy
    from tidings.store.secrets import SecretBox
    from tidings.store.webhooks import WebhookEventType
    from tidings.webhooks.service import EndpointRequest, create_endpoint

    known = {t.value for t in WebhookEventType}
    unknown = [e for e in event if e not in known]
    if unknown:
        errors.print(problem(f"--event {unknown[0]!r}: one of {', '.join(sorted(known))}"))
        raise typer.Exit(2)
    request = EndpointRequest(
        url=url,
        event_types=[WebhookEventType(e) for e in event],
        app_id=app_id,
        description=description,
    )

    async def step(settings: Settings, db: Database) -> EndpointCreated:
        secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
        box = SecretBox.from_settings(secret_key, settings.home)
        policy = EgressPolicy.from_settings(settings)
        return await create_endpoint(db, box, policy, request, caller_app=None)

    created = _call(step)
    console.print(success(f"webhook endpoint {created.id}: {', '.join(created.event_types)}"))
    console.print(Text.assemble("signing secret (shown this once): ", (created.secret, "bold")))


@app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """Every endpoint, its events by where they stand; never a secret."""
    from pydantic import TypeAdapter

    from tidings.cli.runs import print_json
    from tidings.webhooks.service import EndpointView, list_endpoints

    async def step(settings: Settings, db: Database) -> list[EndpointView]:
        views: list[EndpointView] = []
        after: str | None = None
        while True:
            page, after = await list_endpoints(db, caller_app=None, after=after, limit=500)
            views += page
            if after is None:
                return views

    views = _call(step)
    if as_json:
        print_json(console, TypeAdapter(list[EndpointView]).dump_json(views, indent=2))
        return
    table = Table(title="webhook endpoints", header_style="bold")
    for column in ("id", "url", "app", "events", "state", "pending", "sent", "failed"):
        table.add_column(column, no_wrap=column in ("id", "url"))
    for view in views:
        table.add_row(
            Text(view.id),
            Text(view.url),
            Text(view.app_id or "every app"),
            Text(", ".join(view.event_types)),
            "paused" if view.paused else "active",
            str(view.deliveries.pending),
            str(view.deliveries.sent),
            Text(str(view.deliveries.failed), style="red" if view.deliveries.failed else ""),
        )
    console.print(table)


@app.command("show")
def show(endpoint_id: EndpointArg, as_json: JsonFlag = False) -> None:
    """One endpoint and its set-aside events with why."""
    from tidings.cli.runs import print_json
    from tidings.store.webhooks import DeliveryState
    from tidings.webhooks.service import DeliveryView, EndpointView, get_endpoint, list_deliveries

    async def step(settings: Settings, db: Database) -> tuple[EndpointView, list[DeliveryView]]:
        view = await get_endpoint(db, endpoint_id, caller_app=None)
        failed, _ = await list_deliveries(
            db, endpoint_id, caller_app=None, state=DeliveryState.FAILED, limit=20
        )
        return view, failed

    view, failed = _call(step)
    if as_json:
        print_json(console, view.model_dump_json(indent=2))
        return
    state = "paused" if view.paused else "active"
    console.print(Text.assemble((view.id, "bold"), f" {state} → ", view.url))
    console.print(Text(f"app: {view.app_id or 'every app'}; events: {', '.join(view.event_types)}"))
    counts = view.deliveries
    console.print(Text(f"pending {counts.pending}, sent {counts.sent}, failed {counts.failed}"))
    for item in failed:
        console.print(Text(f"  set aside {item.event_type} {item.event_id}: {item.last_error}"))


@app.command("delete")
def delete(endpoint_id: EndpointArg) -> None:
    """Unsubscribe: the endpoint and the events still bound for it are gone."""
    from tidings.webhooks.service import delete_endpoint

    _call(lambda settings, db: delete_endpoint(db, endpoint_id, caller_app=None))
    console.print(success(f"webhook endpoint {endpoint_id} deleted"))


@app.command("pause")
def pause(endpoint_id: EndpointArg) -> None:
    """Send nothing until resumed; its events keep queuing."""
    from tidings.webhooks.service import set_paused

    _call(lambda settings, db: set_paused(db, endpoint_id, True, caller_app=None))
    console.print(success(f"webhook endpoint {endpoint_id} paused"))


@app.command("resume")
def resume(endpoint_id: EndpointArg) -> None:
    """Send its queued events, in order."""
    from tidings.webhooks.service import set_paused

    _call(lambda settings, db: set_paused(db, endpoint_id, False, caller_app=None))
    console.print(success(f"webhook endpoint {endpoint_id} resumed"))


@app.command("requeue")
def requeue(endpoint_id: EndpointArg) -> None:
    """Give the endpoint's set-aside events another round of attempts."""
    from tidings.webhooks.service import requeue as requeue_failed

    count = _call(lambda settings, db: requeue_failed(db, endpoint_id, caller_app=None))
    console.print(success(f"webhook endpoint {endpoint_id}: {count} set-aside events requeued"))
